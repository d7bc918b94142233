"""Beam search against exhaustive search and greedy; batch invariance; n-best; force decoding."""

import itertools
import json
import logging
import math
import random
import shutil

import pytest
import torch
from conftest import SPLIT_SIZES, tcli

from transformer_cli import load_run
from transformer_cli.data.batching import source_tensor
from transformer_cli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from transformer_cli.decode import (
    beam_search,
    greedy_decode,
    greedy_decode_reference,
    length_penalty,
    score_targets,
)
from transformer_cli.errors import DataError
from transformer_cli.model import DecoderState, ModelConfig, Transformer
from transformer_cli.translator import Translator, build_model

# A vocabulary small enough to enumerate: PAD 0, UNK 1, BOS 2, EOS 3, and the words 4, 5, 6.
TINY_VOCAB, OUTPUT_TOKENS = 7, (1, 4, 5, 6)


def _random_tiny_model(seed: int, sharpness: float = 4.0) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(
        d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=2, d_ff=32, dropout=0.0
    )
    model = Transformer(config, TINY_VOCAB, TINY_VOCAB).eval()
    with torch.no_grad():  # sharpen the output distribution so that hypotheses differ clearly
        model.output_proj.weight.mul_(sharpness)
    return model


@pytest.fixture
def tiny_model() -> Transformer:
    return _random_tiny_model(11)


def _next_log_probs(model: Transformer, src: torch.Tensor, prefixes: list[list[int]]):
    """Full (non-incremental) decoding of equally long prefixes (without BOS) of one source:
    the log-probabilities of each prefix's next token, (prefixes, vocab)."""
    memory, src_mask = model.encode(src.expand(len(prefixes), -1))
    tgt_in = torch.tensor([[BOS_ID, *prefix] for prefix in prefixes])
    return model.decode(tgt_in, memory, src_mask)[:, -1].log_softmax(-1).tolist()


@torch.no_grad()
def _all_hypotheses(model: Transformer, src: torch.Tensor, limit: int, alpha: float):
    """Every output the searches may produce, scored by full decoding: up to limit - 1 tokens
    and EOS, or exactly `limit` tokens cut off without EOS."""
    scored, prefixes = [], [(0.0, [])]  # every prefix of one length, with its log-probability
    for length in range(limit):
        next_log_probs = _next_log_probs(model, src, [tokens for _, tokens in prefixes])
        expanded = list(zip(prefixes, next_log_probs, strict=True))
        penalty = length_penalty(length + 1, alpha)
        scored += [((lp + next_lp[EOS_ID]) / penalty, tokens) for (lp, tokens), next_lp in expanded]
        prefixes = [
            (lp + next_lp[token], [*tokens, token])
            for (lp, tokens), next_lp in expanded
            for token in OUTPUT_TOKENS
        ]
    scored += [(lp / length_penalty(limit, alpha), tokens) for lp, tokens in prefixes]
    return sorted(scored, key=lambda item: -item[0])


def _random_cases(count: int):
    """`count` random tiny models, from less to more sure of their choices, each with a random
    source of 1 to 4 words."""
    for seed in range(count):
        src_ids = random.Random(seed).choices(OUTPUT_TOKENS, k=1 + seed % 4)
        yield seed, _random_tiny_model(seed, 4.0 * (1 + seed % 3)), source_tensor([src_ids])


@torch.no_grad()
def _plain_beam_search(model: Transformer, src: torch.Tensor, k: int, limit: int, alpha: float):
    """Beam search written plainly, rescoring whole prefixes, as `beam_search` defines it: each
    step ranks every continuation of the live hypotheses; those among the k best that end in EOS
    are finished, and the k best that do not live on (at the limit they finish as they are).
    It stops once k are finished. Returns the best (score, tokens)."""
    live, finished = [(0.0, [])], []
    for step in range(1, limit + 1):
        next_log_probs = _next_log_probs(model, src, [tokens for _, tokens in live])
        candidates = [
            (lp + next_lp[token], [*tokens, token])
            for (lp, tokens), next_lp in zip(live, next_log_probs, strict=True)
            for token in (*OUTPUT_TOKENS, EOS_ID)
        ]
        candidates.sort(key=lambda item: -item[0])
        penalty = length_penalty(step, alpha)
        ended = [(lp, tokens[:-1]) for lp, tokens in candidates[:k] if tokens[-1] == EOS_ID]
        finished += [(lp / penalty, tokens) for lp, tokens in ended]
        live = [(lp, tokens) for lp, tokens in candidates if tokens[-1] != EOS_ID][:k]
        if step == limit:
            finished += [(lp / penalty, tokens) for lp, tokens in live]
        if len(finished) >= k:
            break
    return max(finished, key=lambda item: item[0])


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_wide_beam_without_the_greedy_candidate_finds_the_exhaustive_best(alpha):
    limit = 3  # max_len_a = 0, max_len_b = 3
    # The last step ranks 4^2 live hypotheses times 5 tokens (4 words and EOS): a beam that wide
    # keeps every candidate, so it must find exactly what exhaustive search finds.
    beam_size = 4 ** (limit - 1) * 5
    for seed, model, src in _random_cases(40):
        exhaustive = _all_hypotheses(model, src, limit, alpha)
        found = beam_search(model, src, beam_size, 0.0, limit, alpha, 5, greedy_candidate=False)
        assert [h.tokens for h in found[0]] == [tokens for _, tokens in exhaustive[:5]], seed
        for hypothesis, (score, _) in zip(found[0], exhaustive, strict=False):
            assert hypothesis.score == pytest.approx(score, abs=1e-4), seed


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("beam_size", [2, 3])
def test_narrow_beam_without_the_greedy_candidate_equals_a_plain_beam_search(alpha, beam_size):
    # Among the cases: a beam pruning the greedy path in the step where a hypothesis ends (which
    # once crashed beam_search), and cases where stopping too early misses the best under the
    # length penalty.
    limit = 4
    for seed, model, src in _random_cases(100):
        score, tokens = _plain_beam_search(model, src, beam_size, limit, alpha)
        best = beam_search(model, src, beam_size, 0.0, limit, alpha, greedy_candidate=False)[0][0]
        assert best.score == pytest.approx(score, abs=1e-4), (seed, best.tokens, tokens)


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

    pad_id = PAD_ID
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

    monkeypatch.setattr("transformer_cli.translator.beam_search", no_beam_search)
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

    pad_id = PAD_ID
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
    for batch_size, batch_tokens, order in itertools.product(
        (1, 7, 64), (8000, 150), (range(len(sentences)), shuffled)
    ):
        run.decode = run.decode.model_copy(update={"batch_tokens": batch_tokens})
        outputs = run.translate([sentences[i] for i in order], batch_size=batch_size)
        for i, output in zip(order, outputs, strict=True):
            if output != reference[i]:  # allowed only for a true tie, which float round-off flips
                tie = run.score([sentences[i]] * 2, [output, reference[i]])
                assert tie[0] == pytest.approx(tie[1], abs=1e-5), (
                    sentences[i],
                    output,
                    reference[i],
                )


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_batches_hold_at_most_batch_tokens_unless_one_sentence_does(run_dir, strategy, monkeypatch):
    run = load_run(run_dir, device="cpu")
    run.decode = run.decode.model_copy(
        update={"strategy": strategy, "beam_size": 4, "batch_tokens": 300}
    )
    width, search = (1, greedy_decode) if strategy == "greedy" else (4, beam_search)
    shapes = []

    def recording_search(model, src, *args):
        shapes.append(tuple(src.shape))  # (sentences, longest source + EOS)
        return search(model, src, *args)

    monkeypatch.setattr(f"transformer_cli.translator.{search.__name__}", recording_search)
    sentences = [*_sentences(run_dir), "The old man gives the child a red ball. " * 16, ""]
    assert len(run.translate(sentences)) == len(sentences)
    assert sum(rows for rows, _ in shapes) == len(sentences) - 1  # the blank line is not searched
    assert all(rows * length * width <= 300 or rows == 1 for rows, length in shapes)
    assert shapes[-1][1] * width > 300  # the long line, a batch alone
    assert max(rows for rows, _ in shapes) > 1  # and the others share batches
    assert run.translate(sentences) == run.translate(sentences, batch_size=1)


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


def test_lines_too_long_for_learned_positions_are_cut_with_one_warning(run_dir, caplog):
    run = load_run(run_dir, device="cpu")
    short, long = "A cat.", "The old man gives the child a red ball."
    limit = len(run.tokenizers.source.encode([short])[0])
    positions = limit + 1  # + EOS: just enough for `short`
    model_config = run.config.model.model_copy(
        update={"positional": "learned", "max_positions": positions}
    )
    learned = Translator(
        build_model(run.config.model_copy(update={"model": model_config}), run.tokenizers).eval(),
        run.tokenizers,
        run.decode,
        run.device,
    )
    long_ids = learned.tokenizers.source.encode([long])[0]
    with caplog.at_level(logging.WARNING, logger="transformer_cli"):
        translations = learned.translate([short, long, short], first_line=5)
    assert len(translations) == 3 and translations[0] == translations[2]
    assert [r.getMessage() for r in caplog.records] == [
        f"input line 6 has {len(long_ids)} tokens; translating its first {limit} "
        f"(learned positions, model.max_positions={positions})"
    ]
    assert [translations[1]] == learned.detokenize(learned.best_outputs([long_ids[:limit]]))
    with pytest.raises(DataError, match=r"input line 2 has .* at most"):
        learned.score([short, long], [short, short])
    with pytest.raises(DataError, match="target line 1 has"):
        learned.score([short], [long])


def test_lines_past_max_input_tokens_are_cut_with_one_warning_naming_the_first(run_dir, caplog):
    run = load_run(run_dir, device="cpu")
    sentences = ["A cat.", *_sentences(run_dir)[:20]]
    src_ids = run.tokenizers.source.encode(sentences)
    limit = len(src_ids[0])
    run.decode = run.decode.model_copy(update={"max_input_tokens": limit})
    long = [number for number, ids in enumerate(src_ids, start=1) if len(ids) > limit]
    assert len(long) > 5
    with caplog.at_level(logging.WARNING, logger="transformer_cli"):
        translations = run.translate(sentences)
    assert translations == run.detokenize(run.best_outputs([ids[:limit] for ids in src_ids]))
    numbers = ", ".join(map(str, long[:5]))
    assert [r.getMessage() for r in caplog.records] == [
        f"{len(long)} input lines have more than {limit} tokens; translating the first {limit} of "
        f"each (decode.max_input_tokens): lines {numbers}, ..."
    ]
