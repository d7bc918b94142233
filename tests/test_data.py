"""Reading corpora, filtering, tokenization, the encoded cache, batching and the sampler."""

import gzip
import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from conftest import REPO, tiny_config

from transformer_cli.config import ParallelFiles
from transformer_cli.data.batching import (
    Batch,
    TokenBatchSampler,
    padding_fraction,
    pair_lengths,
)
from transformer_cli.data.cache import EncodedCorpus, fingerprint
from transformer_cli.data.corpus import filter_pairs, iter_pairs, read_lines, read_pairs
from transformer_cli.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Tokenizer,
    Tokenizers,
    _reservoir_sample,
    train_tokenizer,
)
from transformer_cli.errors import DataError
from transformer_cli.train import _train_one

TOY = REPO / "data" / "toy-en-de"


def test_gzip_files_read_like_plain_ones(tmp_path):
    text = "Der Hund.\nDie Katze läuft.\n"
    (tmp_path / "a.de").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "a.de.gz", "wt", encoding="utf-8") as file:
        file.write(text)
    assert (
        read_lines(tmp_path / "a.de.gz")
        == read_lines(tmp_path / "a.de")
        == [
            "Der Hund.",
            "Die Katze läuft.",
        ]
    )


def test_only_newline_ends_a_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("\ufeffone\r\ntwo\rstill two\u2028too\nthree".encode())
    assert read_lines(path) == ["one", "two\rstill two\u2028too", "three"]


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.en"
    path.write_bytes(b"fine\nbroken \xff here\n")
    with pytest.raises(DataError, match=r"data\.train\.src: .*bad\.en:2: not valid UTF-8"):
        read_lines(path, "data.train.src")


def test_missing_file_names_the_config_key(tmp_path):
    with pytest.raises(DataError, match=r"data\.valid\.tgt: file not found: .*nope\.de"):
        read_lines(tmp_path / "nope.de", "data.valid.tgt")


@pytest.mark.parametrize(("src_lines", "tgt_lines"), [(3, 2), (2, 3)])
def test_unequal_line_counts_name_both_files_and_counts(tmp_path, src_lines, tgt_lines):
    (tmp_path / "t.en").write_text("a\n" * src_lines)
    (tmp_path / "t.de").write_text("a\n" * tgt_lines)
    files = ParallelFiles(src=str(tmp_path / "t.en"), tgt=str(tmp_path / "t.de"))
    pattern = rf"data\.train: .*t\.en has {src_lines} lines but .*t\.de has {tgt_lines}"
    with pytest.raises(DataError, match=pattern):
        read_pairs(files, "data.train")


def test_tsv_corpus_reads_like_two_files(tmp_path):
    with gzip.open(tmp_path / "train.tsv.gz", "wt", encoding="utf-8") as file:
        file.write("The dog.\tDer Hund.\nA cat.\tEine Katze.\n")
    pairs = list(iter_pairs(ParallelFiles(tsv=str(tmp_path / "train.tsv.gz"))))
    assert pairs == [("The dog.", "Der Hund."), ("A cat.", "Eine Katze.")]


@pytest.mark.parametrize(("line", "found"), [("no tab here", 1), ("a\tb\tc", 3)])
def test_malformed_tsv_line_is_named_by_number(tmp_path, line, found):
    path = tmp_path / "train.tsv"
    path.write_text(f"ok\tgut\n{line}\nok\tgut\n")
    pattern = (
        rf"data\.train\.tsv: .*train\.tsv:2: expected 2 tab-separated columns .* found {found}"
    )
    with pytest.raises(DataError, match=pattern):
        read_pairs(ParallelFiles(tsv=str(path)), "data.train")


def test_filter_counts_every_dropped_pair_by_its_first_reason():
    src = np.array([2, 0, 10, 1, 1, 2, 1])
    tgt = np.array([1, 2, 1, 11, 0, 8, 3])
    keep, dropped = filter_pairs(src, tgt, max_len=8, max_ratio=3.0)
    assert keep.tolist() == [True, False, False, False, False, False, True]
    assert dropped == Counter(
        {
            "empty side": 2,
            "longer than data.max_len=8 tokens": 2,
            "length ratio above data.max_ratio=3": 1,  # 8 > 3 * 2; 3 is not > 3 * 1
        }
    )
    keep, dropped = filter_pairs(src, tgt, max_len=8, max_ratio=None)
    assert keep.sum() == 3 and "length ratio" not in str(dropped)


def test_batch_shifts_target_for_teacher_forcing():
    batch = Batch.from_ids([[10, 11, 12], [13]], [[20, 21], [22, 23, 24]])
    assert batch.src.tolist() == [[10, 11, 12, EOS_ID], [13, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.tgt_in.tolist() == [[BOS_ID, 20, 21, PAD_ID], [BOS_ID, 22, 23, 24]]
    assert batch.tgt_out.tolist() == [[20, 21, EOS_ID, PAD_ID], [22, 23, 24, EOS_ID]]
    assert batch.n_tgt_tokens == 7


@pytest.fixture
def lengths() -> np.ndarray:
    return np.random.default_rng(0).integers(3, 60, size=2000)


def test_sampler_yields_every_example_once_per_epoch(lengths):
    sampler = TokenBatchSampler(lengths, batch_tokens=500, seed=3)
    for epoch in range(3):
        indices = np.concatenate(sampler.batches(epoch))
        assert sorted(indices.tolist()) == list(range(len(lengths)))


def test_sampler_respects_the_token_budget(lengths):
    for batch in TokenBatchSampler(lengths, batch_tokens=500).batches():
        assert len(batch) * lengths[batch].max() <= 500


def test_sampler_cuts_batches_like_the_one_at_a_time_greedy(lengths):
    batches = TokenBatchSampler(lengths, batch_tokens=500, shuffle=False).batches()
    expected, current = [], []
    for index in np.argsort(lengths, kind="stable").tolist():  # the obvious loop
        if current and (len(current) + 1) * max(lengths[[*current, index]]) > 500:
            expected.append(current)
            current = []
        current.append(index)
    expected.append(current)
    assert [batch.tolist() for batch in batches] == expected


def test_sampler_order_depends_only_on_seed_and_epoch(lengths):
    def as_lists(batches):
        return [batch.tolist() for batch in batches]

    a, b = TokenBatchSampler(lengths, 500, seed=3), TokenBatchSampler(lengths, 500, seed=3)
    assert as_lists(a.batches(1)) == as_lists(b.batches(1))
    assert as_lists(a.batches(1)) != as_lists(a.batches(2))
    assert as_lists(a.batches(1)) != as_lists(TokenBatchSampler(lengths, 500, seed=4).batches(1))


def test_sampler_shards_disjoint_equal_batches_across_ranks(lengths):
    everything = TokenBatchSampler(lengths, 500, seed=1).batches(2)
    shards = [
        TokenBatchSampler(lengths, 500, seed=1, rank=r, world_size=3).batches(2) for r in range(3)
    ]
    assert len({len(shard) for shard in shards}) == 1  # the same number of batches per rank
    assert len(shards[0]) == len(everything) // 3
    seen = [tuple(batch.tolist()) for shard in shards for batch in shard]
    assert len(seen) == len(set(seen))  # no batch on two ranks
    assert set(seen) <= {tuple(batch.tolist()) for batch in everything}


def test_oversized_example_gets_a_batch_of_its_own():
    batches = TokenBatchSampler([5, 100, 5], batch_tokens=20, shuffle=False).batches()
    assert [1] in [batch.tolist() for batch in batches]


@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory) -> Tokenizer:
    src, tgt = read_pairs(ParallelFiles(src=str(TOY / "train.en"), tgt=str(TOY / "train.de")))
    path = tmp_path_factory.mktemp("sp") / "toy.model"
    return train_tokenizer(itertools.chain(src, tgt), path, vocab_size=2000)


def test_bucketing_keeps_padding_under_ten_percent_on_the_bundled_corpus(toy_tokenizer):
    src, tgt = read_pairs(ParallelFiles(src=str(TOY / "train.en"), tgt=str(TOY / "train.de")))
    src_lengths = toy_tokenizer.encode_flat(src)[1]
    tgt_lengths = toy_tokenizer.encode_flat(tgt)[1]
    bucketed = TokenBatchSampler(pair_lengths(src_lengths, tgt_lengths), 4096).batches()
    shuffled = np.random.default_rng(0).permutation(len(src))
    random = np.split(shuffled, np.cumsum([len(b) for b in bucketed])[:-1])  # same batch sizes
    ours = padding_fraction(bucketed, src_lengths, tgt_lengths)
    theirs = padding_fraction(random, src_lengths, tgt_lengths)
    assert ours <= 0.10 < theirs
    assert ours < theirs / 3


def test_tokenizer_reserves_special_ids_and_round_trips(tmp_path):
    sentences = ["Der kleine Hund schläft.", "The small dog sleeps."] * 50
    tokenizer = train_tokenizer(sentences, tmp_path / "sp.model", vocab_size=60)
    pieces = [tokenizer.sp.id_to_piece(i) for i in (PAD_ID, BOS_ID, EOS_ID)]
    assert pieces == ["<pad>", "<s>", "</s>"]
    ids = tokenizer.encode(["Der kleine Hund schläft."])
    assert all(i > EOS_ID for i in ids[0])
    assert tokenizer.decode(ids) == ["Der kleine Hund schläft."]


def _sampled_tokenizer_bytes(path: Path, seed: int) -> bytes:
    """Train on a sample of 500 of the bundled corpus's first 3000 lines, in a fresh process."""
    code = (
        "import sys; from transformer_cli.data.tokenizer import train_tokenizer; "
        "lines = open(sys.argv[1], encoding='utf-8').read().splitlines()[:3000]; "
        "train_tokenizer(lines, sys.argv[2], vocab_size=300, input_sentence_size=500, "
        "seed=int(sys.argv[3]))"
    )
    subprocess.run([sys.executable, "-c", code, TOY / "train.en", path, str(seed)], check=True)
    return path.read_bytes()


def test_a_sampled_corpus_trains_the_same_tokenizer_in_every_process(tmp_path):
    first, second, other = (
        _sampled_tokenizer_bytes(tmp_path / name, seed)
        for name, seed in (("a.model", 1), ("b.model", 1), ("c.model", 2))
    )
    assert first == second  # byte for byte, from two processes
    assert first != other  # the sample really depends on the seed


def test_reservoir_sampling_keeps_every_sentence_equally_likely():
    counts = Counter(
        sentence
        for seed in range(2000)
        for sentence in _reservoir_sample(map(str, range(10)), 3, seed)
    )
    assert sorted(counts) == list(map(str, range(10)))
    assert all(abs(count / 2000 - 0.3) < 0.04 for count in counts.values())  # 3 of 10 each
    assert _reservoir_sample(["a", "b"], 5, 0) == ["a", "b"]


@pytest.mark.parametrize(("size", "said"), [(500_000, None), (101, "sampling 101 of 1,200")])
def test_the_tokenizer_says_it_samples_only_when_it_does(corpus, tmp_path, caplog, size, said):
    config = tiny_config(corpus)
    config.tokenizer.input_sentence_size = size
    caplog.set_level("INFO", logger="transformer_cli")
    _train_one(config, tmp_path / "sp.model", (0, 1), "joint", pairs=600)
    line = next(m for m in caplog.messages if m.startswith("training SentencePiece"))
    assert (
        line
        == f"training SentencePiece (joint, vocab_size=300{f', {said} sentences' if said else ''})"
    )


def test_a_vocabulary_smaller_than_asked_for_is_reported(tmp_path, caplog):
    sentences = ["Der kleine Hund schläft.", "The small dog sleeps."] * 50
    caplog.set_level("INFO", logger="transformer_cli")
    tokenizer = train_tokenizer(sentences, tmp_path / "sp.model", vocab_size=5000)
    assert tokenizer.vocab_size < 5000
    assert f"vocab_size=5000: the training data gave only {tokenizer.vocab_size}" in caplog.text


def test_a_foreign_sentencepiece_model_is_mapped_onto_our_ids(tmp_path):
    # SentencePiece's own defaults: <unk> 0, <s> 1, </s> 2, and no padding piece at all.
    sentences = [f"word{i} and more words here" for i in range(200)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(tmp_path / "foreign"),
        vocab_size=30, minloglevel=2,
    )  # fmt: skip
    tokenizer = Tokenizer(tmp_path / "foreign.model")
    assert tokenizer.sp.pad_id() == -1 and tokenizer.sp.unk_id() == 0
    assert tokenizer.vocab_size == tokenizer.sp.get_piece_size() + 1  # ours adds PAD
    ids = tokenizer.encode(["word7 and more", "ßß unknown ßß"])
    assert all(i >= 4 for i in ids[0]) and UNK_ID in ids[1]
    assert tokenizer.decode(ids)[0] == "word7 and more"
    assert "⁇" in tokenizer.decode(ids)[1]  # our UNK decodes to SentencePiece's unknown mark


def test_encoded_corpus_round_trips_filters_and_memory_maps(tmp_path, toy_tokenizer):
    pairs = [("The dog sleeps.", "Der Hund schläft."), ("", "Leer."), ("A cat.", "Eine Katze.")]
    tokenizers = Tokenizers(toy_tokenizer, toy_tokenizer)
    stamp = {"test": 1}
    corpus = EncodedCorpus.build(
        tmp_path, pairs, tokenizers, max_len=50, max_ratio=None, fingerprint=stamp
    )
    assert len(corpus) == 2 and corpus.stats == {"read": 3, "kept": 2, "dropped": {"empty side": 1}}
    assert isinstance(corpus.src[0], np.memmap) and corpus.src[0].dtype == np.uint16
    batch = corpus.batch(np.array([1, 0]))
    expected = Batch.from_ids(
        toy_tokenizer.encode(["A cat.", "The dog sleeps."]),
        toy_tokenizer.encode(["Eine Katze.", "Der Hund schläft."]),
    )
    assert batch.src.tolist() == expected.src.tolist()
    assert batch.tgt_in.tolist() == expected.tgt_in.tolist()
    assert EncodedCorpus.open(tmp_path, stamp) is not None
    assert EncodedCorpus.open(tmp_path, {"test": 2}) is None  # made from something else


def test_fingerprint_changes_with_the_data_and_the_tokenizer(tmp_path, toy_tokenizer):
    data = tmp_path / "train.en"
    data.write_text("one\n")
    before = fingerprint([data], [toy_tokenizer.path], max_len=5)
    assert fingerprint([data], [toy_tokenizer.path], max_len=5) == before
    data.write_text("one\ntwo\n")
    assert fingerprint([data], [toy_tokenizer.path], max_len=5) != before
    assert fingerprint([data], [toy_tokenizer.path], max_len=6) != fingerprint(
        [data], [toy_tokenizer.path], max_len=5
    )


def test_cache_files_are_what_the_docstring_says(tmp_path, toy_tokenizer):
    tokenizers = Tokenizers(toy_tokenizer, toy_tokenizer)
    EncodedCorpus.build(tmp_path, [("a b", "c d")], tokenizers, 10, None, {})
    names = sorted(path.name for path in Path(tmp_path).iterdir())
    assert names == [
        "train.json",
        "train.src.ids",
        "train.src.offsets.npy",
        "train.tgt.ids",
        "train.tgt.offsets.npy",
    ]
