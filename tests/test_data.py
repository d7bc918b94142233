"""Reading parallel text, tokenization, batching and the length-bucketing sampler."""

import gzip
from collections import Counter

import numpy as np
import pytest

from transformer_cli.data.batching import Batch, TokenBatchSampler
from transformer_cli.data.corpus import filter_pairs, read_lines, read_parallel
from transformer_cli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer
from transformer_cli.errors import DataError


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


def test_unequal_line_counts_name_both_files_and_counts(tmp_path):
    (tmp_path / "t.en").write_text("a\nb\nc\n")
    (tmp_path / "t.de").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"data\.train: .*t\.en has 3 lines but .*t\.de has 2"):
        read_parallel(tmp_path / "t.en", tmp_path / "t.de", "data.train")


def test_filter_counts_every_dropped_pair_by_reason():
    src = [[5, 6], [], [5] * 10, [7], [8]]
    tgt = [[5], [6], [5], [7] * 11, []]
    kept, dropped = filter_pairs(src, tgt, max_len=8)
    assert kept == [0]
    assert dropped == Counter({"empty side": 2, "longer than data.max_len=8 tokens": 2})


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
        indices = [i for batch in sampler.batches(epoch) for i in batch]
        assert sorted(indices) == list(range(len(lengths)))


def test_sampler_respects_the_token_budget(lengths):
    for batch in TokenBatchSampler(lengths, batch_tokens=500).batches():
        assert len(batch) * lengths[batch].max() <= 500


def test_sampler_order_depends_only_on_seed_and_epoch(lengths):
    a, b = TokenBatchSampler(lengths, 500, seed=3), TokenBatchSampler(lengths, 500, seed=3)
    assert a.batches(1) == b.batches(1)
    assert a.batches(1) != a.batches(2)
    assert a.batches(1) != TokenBatchSampler(lengths, 500, seed=4).batches(1)


def test_bucketing_pads_far_less_than_random_batches(lengths):
    def padding_fraction(batches):
        padded = sum(len(b) * lengths[b].max() for b in batches)
        return 1 - sum(lengths[b].sum() for b in batches) / padded

    bucketed = TokenBatchSampler(lengths, 500).batches()
    shuffled = np.random.default_rng(0).permutation(len(lengths))
    sizes = [len(batch) for batch in bucketed]
    random_batches = np.split(shuffled, np.cumsum(sizes)[:-1])  # same batch sizes, random members
    assert padding_fraction(bucketed) < 0.05 < 0.3 < padding_fraction(random_batches)


def test_oversized_example_gets_a_batch_of_its_own():
    batches = TokenBatchSampler([5, 100, 5], batch_tokens=20, shuffle=False).batches()
    assert [1] in batches


def test_tokenizer_reserves_special_ids_and_round_trips(tmp_path):
    sentences = ["Der kleine Hund schläft.", "The small dog sleeps."] * 50
    tokenizer = train_tokenizer(sentences, tmp_path / "sp.model", vocab_size=60)
    pieces = [tokenizer.sp.id_to_piece(i) for i in (PAD_ID, BOS_ID, EOS_ID)]
    assert pieces == ["<pad>", "<s>", "</s>"]
    ids = tokenizer.encode(["Der kleine Hund schläft."])
    assert all(i > EOS_ID for i in ids[0])
    assert tokenizer.decode(ids) == ["Der kleine Hund schläft."]
    assert (tmp_path / "sp.model").is_file()
