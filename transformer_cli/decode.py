"""Search: turning the model's next-token distributions into output sequences, and scoring them.

Every search here decodes incrementally (the decoder's keys and values are cached, one new token
per step) and drops sentences from the batch as soon as they are finished.
`greedy_decode_reference` keeps the obvious version, as the tutorials write it: it re-runs the
decoder over every sentence's whole prefix at every step. The tests prove the fast searches equal
to it and the benchmark measures both.

A sentence's output is limited to `max_len_a * source_tokens + max_len_b` tokens (EOS not
counted); a hypothesis that reaches the limit ends there without EOS.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from transformer_cli.data.batching import flatten, pad_rows
from transformer_cli.data.tokenizer import BOS_ID, EOS_ID
from transformer_cli.model import Transformer


@dataclass
class Hypothesis:
    tokens: list[int]  # the output, without BOS and EOS
    score: float  # what the search ranks by: log_prob / length penalty
    log_prob: float  # the sum of the token log-probabilities (EOS included if produced)


def max_output_lengths(
    src: Tensor, pad_id: int, max_len_a: float, max_len_b: int, cap: int | None = None
) -> Tensor:
    """Per-sentence output limit, a * source_tokens + b (EOS not counted), at most `cap` (the
    decoder positions a learned table has): (batch,) int64."""
    src_tokens = (src != pad_id).sum(dim=1) - 1  # the source's EOS is not a word
    return (max_len_a * src_tokens + max_len_b).floor().long().clamp(min=1, max=cap)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's lp(Y) = ((5 + |Y|) / 6)^alpha (Wu et al. 2016); 1 for alpha = 0."""
    return ((5 + length) / 6) ** alpha


def _next_token_log_probs(logits: Tensor, pad_id: int) -> Tensor:
    log_probs = logits.float().log_softmax(dim=-1)
    log_probs[:, [pad_id, BOS_ID]] = float("-inf")  # never valid outputs
    return log_probs


@torch.no_grad()
def greedy_decode(
    model: Transformer, src: Tensor, max_len_a: float, max_len_b: int, alpha: float = 0.0
) -> list[Hypothesis]:
    """Batched greedy search: every unfinished sentence takes its most likely next token.

    src: (batch, src_len) ids ending in EOS, padded. Returns one hypothesis per sentence (alpha
    only sets its `score`).
    """
    memory, src_mask = model.encode(src)  # (batch, src_len, d_model), (batch, 1, 1, src_len)
    limits = max_output_lengths(src, model.config.pad_id, max_len_a, max_len_b, model.max_length)
    return _greedy(model, memory, src_mask, limits, alpha)


def _greedy(
    model: Transformer, memory: Tensor, src_mask: Tensor, limits: Tensor, alpha: float
) -> list[Hypothesis]:
    rows = memory.size(0)
    outputs: list[Hypothesis | None] = [None] * rows
    sentence = torch.arange(rows, device=memory.device)  # which sentence each row is
    tokens = torch.full((rows, 1), BOS_ID, dtype=torch.long, device=memory.device)
    log_prob = torch.zeros(rows, device=memory.device)
    state = model.start_decoding(memory, src_mask)
    for step in range(1, int(limits.max()) + 1):
        logits = model.decode_step(tokens[:, -1:], state)  # (rows, vocab)
        best, next_token = _next_token_log_probs(logits, model.config.pad_id).max(dim=-1)
        log_prob += best
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (rows, step + 1)
        done = (next_token == EOS_ID) | (limits[sentence] <= step)
        if done.any():
            for row in done.nonzero().flatten().tolist():
                ids, total = _strip_eos(tokens[row, 1:].tolist()), log_prob[row].item()
                outputs[sentence[row]] = Hypothesis(ids, total / length_penalty(step, alpha), total)
            keep = (~done).nonzero().flatten()  # finished sentences stop costing work
            if keep.numel() == 0:
                break
            sentence, tokens, log_prob = sentence[keep], tokens[keep], log_prob[keep]
            state = state.select(keep)
    return outputs


@torch.no_grad()
def greedy_decode_reference(
    model: Transformer, src: Tensor, max_len_a: float, max_len_b: int
) -> list[list[int]]:
    """Greedy search the slow, obvious way: at every step, run the decoder over every sentence's
    whole prefix (finished ones padded) and take the last position's most likely token.
    O(n²) decoder work per sentence; kept as the reference for `greedy_decode`."""
    pad_id = model.config.pad_id
    memory, src_mask = model.encode(src)
    limits = max_output_lengths(src, pad_id, max_len_a, max_len_b, model.max_length)
    tokens = torch.full((src.size(0), 1), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for step in range(1, int(limits.max()) + 1):
        logits = model.decode(tokens, memory, src_mask)[:, -1]  # (batch, vocab)
        next_token = _next_token_log_probs(logits, pad_id).argmax(dim=-1).masked_fill(done, pad_id)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (batch, step + 1)
        done |= (next_token == EOS_ID) | (limits <= step)
        if done.all():
            break
    # each row: tokens, then EOS and PADs, or PADs alone after reaching its limit
    return [row[: _end(row, pad_id)] for row in tokens[:, 1:].tolist()]


def _end(row: list[int], pad_id: int) -> int:
    return next((i for i, token in enumerate(row) if token in (EOS_ID, pad_id)), len(row))


@torch.no_grad()
def beam_search(
    model: Transformer,
    src: Tensor,
    beam_size: int,
    max_len_a: float,
    max_len_b: int,
    alpha: float = 0.0,
    nbest: int = 1,
) -> list[list[Hypothesis]]:
    """Batched beam search over sentences and beams; the `nbest` best hypotheses per sentence.

    Each step extends every live hypothesis by every token and keeps the `beam_size` best
    continuations per sentence. A continuation ending in EOS that ranks among the best
    `beam_size` becomes a finished hypothesis, scored by log P / length_penalty(|Y|, alpha).
    A sentence stops once the beam has finished max(beam_size, nbest) hypotheses (the usual rule,
    which makes beam size 1 exactly greedy search), or earlier when its `nbest` best finished
    hypotheses can no longer be beaten: a live hypothesis's log-probability only falls as it
    grows, so log P / length_penalty(limit) bounds every score it can still reach.

    The greedy translation starts out among the finished hypotheses. Plain beam search can prune
    the greedy path and end with a worse translation than greedy search; with it in the pool,
    beam search is never worse than greedy, for the price of one greedy pass.
    """
    pad_id, k, device = model.config.pad_id, beam_size, src.device
    memory, src_mask = model.encode(src)
    limit_tensor = max_output_lengths(src, pad_id, max_len_a, max_len_b, model.max_length)
    greedy = _greedy(model, memory, src_mask, limit_tensor, alpha)
    limits = limit_tensor.tolist()
    # Rows are grouped by sentence: row slot * k + j is beam j of the slot-th live sentence.
    state = model.start_decoding(memory.repeat_interleave(k, 0), src_mask.repeat_interleave(k, 0))
    live = list(range(src.size(0)))  # the sentence of each slot
    tokens = torch.full((len(live) * k, 1), BOS_ID, dtype=torch.long, device=device)
    scores = torch.full((len(live), k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # at first only one hypothesis per sentence: BOS
    finished: list[list[Hypothesis]] = [[hypothesis] for hypothesis in greedy]
    enough = max(k, nbest) + 1  # finished hypotheses that end a sentence: the beam's and greedy's
    for step in range(1, max(limits) + 1):
        log_probs = _next_token_log_probs(model.decode_step(tokens[:, -1:], state), pad_id)
        vocab = log_probs.size(-1)
        candidates = (scores[:, :, None] + log_probs.view(len(live), k, vocab)).view(len(live), -1)
        # 2k candidates: even if k of them end in EOS, k others continue.
        top_scores, top_ids = candidates.topk(min(2 * k, candidates.size(1)), dim=1)
        next_live, parent_rows, next_tokens, next_scores = [], [], [], []
        for slot, sentence in enumerate(live):
            beams = []
            for rank, (score, index) in enumerate(
                zip(top_scores[slot].tolist(), top_ids[slot].tolist(), strict=True)
            ):
                if score == float("-inf") or len(beams) == k:
                    break
                row, token = slot * k + index // vocab, index % vocab
                if token == EOS_ID:
                    if rank < k:
                        prefix = tokens[row, 1:].tolist()
                        finished[sentence].append(
                            Hypothesis(prefix, score / length_penalty(step, alpha), score)
                        )
                else:
                    beams.append((row, token, score))
            if step >= limits[sentence]:  # out of room: the live hypotheses end here
                for row, token, score in beams:
                    hypothesis = [*tokens[row, 1:].tolist(), token]
                    finished[sentence].append(
                        Hypothesis(hypothesis, score / length_penalty(step, alpha), score)
                    )
                continue
            if (
                not beams
                or len(finished[sentence]) >= enough
                or _cannot_improve(finished[sentence], beams, nbest, limits[sentence], alpha)
            ):
                continue
            beams += [(*beams[-1][:2], float("-inf"))] * (k - len(beams))  # pad with dead beams
            next_live.append(sentence)
            for row, token, score in beams:
                parent_rows.append(row)
                next_tokens.append(token)
                next_scores.append(score)
        if not next_live:
            break
        rows = torch.tensor(parent_rows, device=device)
        state = state.select(rows)  # follow each beam's parent; drop finished sentences
        new_tokens = torch.tensor(next_tokens, device=device)[:, None]
        tokens = torch.cat([tokens[rows], new_tokens], dim=1)
        scores = torch.tensor(next_scores, device=device).view(len(next_live), k)
        live = next_live
    return [_best(hypotheses, nbest) for hypotheses in finished]


def _best(hypotheses: list[Hypothesis], nbest: int) -> list[Hypothesis]:
    """The `nbest` best distinct hypotheses (beam search may find the greedy one again)."""
    distinct: dict[tuple[int, ...], Hypothesis] = {}
    for hypothesis in sorted(hypotheses, key=lambda h: -h.score):
        distinct.setdefault(tuple(hypothesis.tokens), hypothesis)
    return list(distinct.values())[:nbest]


def _cannot_improve(
    finished: list[Hypothesis],
    beams: list[tuple[int, int, float]],
    nbest: int,
    limit: int,
    alpha: float,
) -> bool:
    kept = _best(finished, nbest)  # distinct: the beam may find the greedy hypothesis again
    if len(kept) < nbest:
        return False
    worst_kept = kept[-1].score
    best_reachable = max(score for _, _, score in beams) / length_penalty(limit, alpha)
    return worst_kept >= best_reachable


@torch.no_grad()
def score_targets(model: Transformer, src: Tensor, targets: Sequence[Sequence[int]]) -> list[float]:
    """Log-probability of each target sequence (+ EOS) given its source: force decoding."""
    pad_id = model.config.pad_id
    flat, offsets = flatten(targets)
    rows = np.arange(len(targets))
    tgt_in = pad_rows(flat, offsets, rows, prefix=BOS_ID).to(src.device)
    tgt_out = pad_rows(flat, offsets, rows, suffix=EOS_ID).to(src.device)
    log_probs = model(src, tgt_in).float().log_softmax(dim=-1)  # (batch, tgt_len, vocab)
    picked = log_probs.gather(-1, tgt_out[..., None]).squeeze(-1)  # (batch, tgt_len)
    return picked.masked_fill(tgt_out == pad_id, 0.0).sum(dim=1).tolist()


def _strip_eos(ids: list[int]) -> list[int]:
    return ids[:-1] if ids and ids[-1] == EOS_ID else ids
