"""Beam search against exhaustive search and greedy; batch invariance; n-best; force decoding."""

import itertools
import json
import math
import random
import shutil

import pytest
import torch
from conftest import SPLIT_SIZES, tcli

from transformer_cli import load_run
from transformer_cli.data.batching import source_tensor
from transformer_cli.data.tokenizer import BOS_ID, EOS_ID
from transformer_cli.decode import (
    beam_search,
    greedy_decode,
    greedy_decode_reference,
    length_penalty,
    score_targets,
)
from transformer_cli.errors import DataError
from transformer_cli.model import DecoderState, Transformer, TransformerConfig

# A vocabulary small enough to enumerate: PAD 0, UNK 1, BOS 2, EOS 3, and the words 4, 5, 6.
TINY_VOCAB, OUTPUT_TOKENS = 7, (1, 4, 5, 6)


@pytest.fixture
def tiny_model() -> Transformer:
    torch.manual_seed(11)
    config = TransformerConfig(
        src_vocab_size=TINY_VOCAB, tgt_vocab_size=TINY_VOCAB, d_model=16, n_heads=2,
        n_encoder_layers=1, n_decoder_layers=2, d_ff=32, dropout=0.0,
    )  # fmt: skip
    model = Transformer(config).eval()
    with torch.no_grad():  # sharpen the output distribution so that hypotheses differ clearly
        model.output_proj.weight.mul_(4.0)
    return model


def _all_hypotheses(model: Transformer, src: torch.Tensor, limit: int, alpha: float):
    """Every output the searches may produce, scored by full (non-incremental) decoding:
    up to limit - 1 tokens and EOS, or exactly `limit` tokens cut off without EOS."""
    memory, src_mask = model.encode(src)
    scored = []
    for length in range(limit + 1):
        for tokens in itertools.product(OUTPUT_TOKENS, repeat=length):
            ends_with_eos = length < limit
            targets = [*tokens, EOS_ID] if ends_with_eos else list(tokens)
            tgt_in = torch.tensor([[BOS_ID, *targets[:-1]]])
            log_probs = model.decode(tgt_in, memory, src_mask)[0].log_softmax(-1)
            log_prob = sum(log_probs[i, t].item() for i, t in enumerate(targets))
            scored.append((log_prob / length_penalty(len(targets), alpha), list(tokens)))
    return sorted(scored, key=lambda item: -item[0])


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_wide_beam_finds_the_exhaustive_best(tiny_model, alpha):
    for src_ids in ([4, 5], [6, 6, 4], [5]):
        src = source_tensor([src_ids])
        limit = 3  # max_len_a = 0, max_len_b = 3
        exhaustive = _all_hypotheses(tiny_model, src, limit, alpha)
        # 4^3 = 64 hypotheses reach the limit, so a beam of 128 never prunes anything
        found = beam_search(tiny_model, src, 128, 0.0, limit, alpha, nbest=5)[0]
        assert [h.tokens for h in found] == [tokens for _, tokens in exhaustive[:5]]
        for hypothesis, (score, _) in zip(found, exhaustive, strict=False):
            assert hypothesis.score == pytest.approx(score, abs=1e-5)


def test_beam_of_one_equals_greedy(tiny_model, run_dir):
    gen = torch.Generator().manual_seed(12)
    src = source_tensor([torch.randint(4, 7, (n,), generator=gen).tolist() for n in (1, 3, 5, 8)])
    greedy = [h.tokens for h in greedy_decode(tiny_model, src, 1.0, 3)]
    assert [h[0].tokens for h in beam_search(tiny_model, src, 1, 1.0, 3)] == greedy

    run = load_run(run_dir, device="cpu")
    src = source_tensor(run.tokenizers.source.encode(_sentences(run_dir)))
    greedy = [h.tokens for h in greedy_decode(run.model, src, 1.5, 5)]
    assert [h[0].tokens for h in beam_search(run.model, src, 1, 1.5, 5)] == greedy


class _EosFirstThenLonger:
    """A scripted model: EOS narrowly beats word 4 at the first step, but 4 4 EOS then follows
    with near certainty, so with a length penalty (alpha > 0) the longer output scores higher."""

    config = TransformerConfig(src_vocab_size=TINY_VOCAB, tgt_vocab_size=TINY_VOCAB)
    max_length = None  # no table of positions to run out of

    def encode(self, src):
        return torch.zeros(src.size(0), 1, 4), torch.ones(src.size(0), 1, 1, 1, dtype=torch.bool)

    def start_decoding(self, memory, src_mask, capacity, beams=1):
        return DecoderState(src_mask, [], [])

    def decode_step(self, tokens, state):
        probs = torch.full((tokens.size(0), TINY_VOCAB), 1e-6)
        probs[:, EOS_ID if state.length == 2 else 4] = 0.999
        if state.length == 0:
            probs[:, EOS_ID], probs[:, 4] = 0.5, 0.45
        state.length += 1
        return probs.log()


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_of_one_equals_greedy_with_a_length_penalty(tiny_model, alpha):
    model, src = _EosFirstThenLonger(), source_tensor([[5, 5, 5]])
    assert greedy_decode(model, src, 1.0, 6, alpha)[0].tokens == []
    assert beam_search(model, src, 1, 1.0, 6, alpha)[0][0].tokens == []
    # the wider beam keeps 4 alive and, with the length penalty only, prefers 4 4 to stopping
    assert beam_search(model, src, 2, 1.0, 6, alpha)[0][0].tokens == ([] if alpha == 0 else [4, 4])

    gen = torch.Generator().manual_seed(13)
    src = source_tensor([torch.randint(4, 7, (n,), generator=gen).tolist() for n in range(1, 9)])
    greedy = [h.tokens for h in greedy_decode(tiny_model, src, 1.0, 4, alpha)]
    assert [h[0].tokens for h in beam_search(tiny_model, src, 1, 1.0, 4, alpha)] == greedy


def test_translate_with_beam_one_runs_greedy_search(run_dir, monkeypatch):
    run = load_run(run_dir, device="cpu")  # decode.length_penalty keeps its default, 0.6
    sentences = _sentences(run_dir)
    greedy = run.translate(sentences)
    run.decode = run.decode.model_copy(update={"strategy": "beam", "beam_size": 1})

    def no_beam_search(*args, **kwargs):
        raise AssertionError("a beam of one must take the greedy search path")

    monkeypatch.setattr("transformer_cli.run.beam_search", no_beam_search)
    assert run.translate(sentences) == greedy


def test_cli_greedy_flag_and_beam_one_override_a_beam_config(run_dir, tmp_path):
    beam_run = tmp_path / "run"
    shutil.copytree(run_dir, beam_run, ignore=shutil.ignore_patterns("cache"))
    config = (beam_run / "config.yaml").read_text(encoding="utf-8")
    assert "strategy: greedy" in config
    (beam_run / "config.yaml").write_text(config.replace("strategy: greedy", "strategy: beam"))
    sentences = _sentences(run_dir)[:10]
    source = tmp_path / "src.txt"
    source.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    greedy = load_run(run_dir, device="cpu").translate(sentences)
    for flag in (["--greedy"], ["--beam", "1"]):
        result = tcli("translate", beam_run, "--input", source, "--device", "cpu", *flag)
        assert result.stdout.splitlines() == greedy
    both = tcli("translate", beam_run, "--input", source, "--greedy", "--beam", "2", check=False)
    assert both.returncode == 2 and "--greedy and --beam exclude each other" in both.stderr


def test_cached_greedy_equals_the_reference_on_a_trained_model(run_dir):
    run = load_run(run_dir, device="cpu")
    src = source_tensor(run.tokenizers.source.encode(_sentences(run_dir)))
    cached = [h.tokens for h in greedy_decode(run.model, src, 1.5, 5)]
    assert cached == greedy_decode_reference(run.model, src, 1.5, 5)


def test_beam_never_scores_worse_than_greedy(run_dir):
    run = load_run(run_dir, device="cpu")
    src = source_tensor(run.tokenizers.source.encode(_sentences(run_dir)))
    greedy = greedy_decode(run.model, src, 1.5, 5)
    for size in (2, 5):
        beam = beam_search(run.model, src, size, 1.5, 5)
        for ours, theirs in zip(beam, greedy, strict=True):
            assert ours[0].log_prob >= theirs.log_prob - 1e-5


class _PrefixState(DecoderState):
    """A decoder state that keeps each row's whole prefix."""

    def __init__(self, src_mask, rows):
        super().__init__(src_mask, [], [])
        self.prefixes = [()] * rows

    def select(self, rows, sentences=None):
        super().select(rows, sentences)
        self.prefixes = [self.prefixes[row] for row in rows.tolist()]


class _GreedyPrunedByTheBeam:
    """A scripted model where a beam of 2 prunes the greedy path 4 6 EOS (probability .0864) at
    its second step, for 5 4 and 5 5 (.175 each), which then only lead to worse endings."""

    config = TransformerConfig(src_vocab_size=TINY_VOCAB, tgt_vocab_size=TINY_VOCAB)
    max_length = None

    encode = _EosFirstThenLonger.encode

    def start_decoding(self, memory, src_mask, capacity, beams=1):
        return _PrefixState(src_mask, memory.size(0))

    @staticmethod
    def next_token(prefix: tuple[int, ...]) -> dict[int, float]:
        if prefix == ():
            return {4: 0.4, 5: 0.35, 6: 0.25}
        if prefix == (4,):
            return {6: 0.24, 1: 0.19, 4: 0.19, 5: 0.19, EOS_ID: 0.19}
        if prefix == (4, 6):
            return {EOS_ID: 0.9, 4: 0.1}
        if prefix == (5,):
            return {4: 0.5, 5: 0.5}
        return {4: 0.33, 5: 0.33, 6: 0.33, EOS_ID: 0.01}

    def decode_step(self, tokens, state):
        state.prefixes = [
            (*p, t) for p, t in zip(state.prefixes, tokens[:, 0].tolist(), strict=True)
        ]
        probs = torch.full((tokens.size(0), TINY_VOCAB), 1e-9)
        for row, prefix in enumerate(state.prefixes):
            for token, p in self.next_token(prefix[1:]).items():  # prefix[0] is BOS
                probs[row, token] = p
        state.length += 1
        return probs.log()


def test_beam_search_keeps_the_greedy_translation_it_pruned():
    model, src = _GreedyPrunedByTheBeam(), source_tensor([[5, 5]])
    greedy = greedy_decode(model, src, 0.0, 4)[0]
    assert greedy.tokens == [4, 6]
    best = beam_search(model, src, 2, 0.0, 4)[0][0]
    assert best.tokens == [4, 6]
    assert best.log_prob == pytest.approx(math.log(0.4 * 0.24 * 0.9), abs=1e-5)


def _sentences(run_dir) -> list[str]:
    config = load_run(run_dir, device="cpu").config
    with open(config.data.test.src, encoding="utf-8") as test, open(config.data.valid.src) as valid:
        return test.read().splitlines() + valid.read().splitlines()


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_translations_do_not_depend_on_batch_size_or_order(run_dir, strategy):
    run = load_run(run_dir, device="cpu")
    run.decode = run.decode.model_copy(update={"strategy": strategy, "beam_size": 4})
    sentences = _sentences(run_dir)
    reference = run.translate(sentences, batch_size=64)
    shuffled = list(range(len(sentences)))
    random.Random(0).shuffle(shuffled)
    for batch_size, order in itertools.product((1, 7, 64), (range(len(sentences)), shuffled)):
        outputs = run.translate([sentences[i] for i in order], batch_size=batch_size)
        for i, output in zip(order, outputs, strict=True):
            if output != reference[i]:  # allowed only for a true tie, which float round-off flips
                tie = run.score([sentences[i]] * 2, [output, reference[i]])
                assert tie[0] == pytest.approx(tie[1], abs=1e-5), (
                    sentences[i],
                    output,
                    reference[i],
                )


def test_nbest_is_sorted_and_starts_with_the_beam_translation(run_dir):
    run = load_run(run_dir, device="cpu")
    run.decode = run.decode.model_copy(update={"strategy": "beam", "beam_size": 4})
    sentences = _sentences(run_dir)[:10]
    nbest = run.translate_nbest(sentences, 3)
    assert [hyps[0][0] for hyps in nbest] == run.translate(sentences)
    for hyps in nbest:
        assert len(hyps) == 3
        assert len({text for text, _ in hyps}) == 3  # no two spell the same text
        assert [score for _, score in hyps] == sorted((score for _, score in hyps), reverse=True)


def test_force_decoding_scores_equal_the_beam_log_probabilities(run_dir):
    run = load_run(run_dir, device="cpu")
    sentences = _sentences(run_dir)[:8]
    src = source_tensor(run.tokenizers.source.encode(sentences))
    hypotheses = [h[0] for h in beam_search(run.model, src, 3, 3.0, 10)]  # room to end with EOS
    tokens = [h.tokens for h in hypotheses]
    for scored, hypothesis in zip(score_targets(run.model, src, tokens), hypotheses, strict=True):
        assert scored == pytest.approx(hypothesis.log_prob, abs=1e-4)
    # Through text, as `tcli translate --score` does, for the outputs whose text encodes back to
    # the same pieces (a model may spell a word with pieces SentencePiece would not choose).
    texts = run.tokenizers.target.decode(tokens)
    same = [i for i, ids in enumerate(run.tokenizers.target.encode(texts)) if ids == tokens[i]]
    assert len(same) >= len(sentences) // 2
    scored = run.score([sentences[i] for i in same], [texts[i] for i in same])
    assert scored == pytest.approx([hypotheses[i].log_prob for i in same], abs=1e-4)


def test_a_blank_source_is_scored_as_the_source_that_is_just_eos(run_dir):
    run = load_run(run_dir, device="cpu")
    target = "Der Hund schläft."
    (scored,) = run.score([""], [target])
    ids = run.tokenizers.target.encode([target])[0]
    with torch.no_grad():
        logits = run.model(torch.tensor([[EOS_ID]]), torch.tensor([[BOS_ID, *ids]]))
    expected = logits.log_softmax(-1)[0].gather(-1, torch.tensor([*ids, EOS_ID])[:, None]).sum()
    assert scored < 0 and scored == pytest.approx(float(expected), abs=1e-4)
    assert run.score(["", "A dog."], [target, target])[0] == pytest.approx(scored, abs=1e-4)


def test_cli_beam_nbest_and_score(run_dir, corpus, tmp_path):
    beam = tcli(
        "translate", run_dir, "--beam", "5", "--device", "cpu", stdin="The dog sleeps.\n\nA cat.\n"
    )
    assert beam.stdout.count("\n") == 3 and beam.stdout.split("\n")[1] == ""
    nbest = tcli("translate", run_dir, "--input", corpus / "valid.en", "--nbest", "2")
    lines = nbest.stdout.splitlines()
    assert len(lines) == 2 * SPLIT_SIZES["valid"]
    number, text, score = lines[1].split(" ||| ")
    assert number == "0" and text and float(score) <= 0
    scores = tcli(
        "translate", run_dir, "--input", corpus / "valid.en", "--score", corpus / "valid.de"
    )
    values = [float(v) for v in scores.stdout.split()]
    assert len(values) == SPLIT_SIZES["valid"] and all(v < 0 for v in values)
    short = tmp_path / "short.de"
    short.write_text("Eins.\n")
    bad = tcli("translate", run_dir, "--input", corpus / "valid.en", "--score", short, check=False)
    assert bad.returncode == 2 and "has 1 lines but the input has 20" in bad.stderr
    scored = json.loads(tcli("eval", run_dir, "--beam", "3", "--json", "--device", "cpu").stdout)
    assert scored["n_sentences"] == SPLIT_SIZES["test"]


def test_lines_too_long_for_learned_positions_are_named(run_dir):
    run = load_run(run_dir, device="cpu")
    short, long = "A cat.", "The old man gives the child a red ball."
    # as if trained with learned positions and model.max_positions just enough for `short`
    run.model.max_length = len(run.tokenizers.source.encode([short])[0]) + 1
    with pytest.raises(DataError, match=f"input line 2 has .* at most {run.model.max_length - 1}"):
        run.translate([short, long])
    with pytest.raises(DataError, match="target line 1 has"):
        run.score([short], [long])
