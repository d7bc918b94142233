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
    log_probs[:, pad_id] = float("-inf")  # never valid outputs
    log_probs[:, BOS_ID] = float("-inf")
    return log_probs


@torch.inference_mode()
def greedy_decode(
    model: Transformer, src: Tensor, max_len_a: float, max_len_b: int, alpha: float = 0.0
) -> list[Hypothesis]:
    """Batched greedy search: every unfinished sentence takes its most likely next token.

    src: (batch, src_len) ids ending in EOS, padded. Returns one hypothesis per sentence (alpha
    only sets its `score`).
    """
    memory, src_mask = model.encode(src)  # (batch, src_len, d_model), (batch, 1, 1, src_len)
    limits = max_output_lengths(src, model.pad_id, max_len_a, max_len_b, model.max_length)
    return _greedy(model, memory, src_mask, limits, alpha)


def _greedy(
    model: Transformer, memory: Tensor, src_mask: Tensor, limits: Tensor, alpha: float
) -> list[Hypothesis]:
    rows, longest = memory.size(0), int(limits.max())
    outputs: list[Hypothesis | None] = [None] * rows
    sentence = torch.arange(rows, device=memory.device)  # which sentence each row is
    tokens = torch.full((rows, longest + 1), BOS_ID, dtype=torch.long, device=memory.device)
    log_prob = torch.zeros(rows, device=memory.device)
    state = model.start_decoding(memory, src_mask, capacity=longest)
    for step in range(1, longest + 1):
        logits = model.decode_step(tokens[:, step - 1 : step], state)  # (rows, vocab)
        best, tokens[:, step] = _next_token_log_probs(logits, model.pad_id).max(dim=-1)
        log_prob += best
        done = (tokens[:, step] == EOS_ID) | (limits <= step)
        if done.any():  # the step's one host sync
            for row in done.nonzero().flatten().tolist():
                ids, total = _strip_eos(tokens[row, 1 : step + 1].tolist()), log_prob[row].item()
                outputs[sentence[row]] = Hypothesis(ids, total / length_penalty(step, alpha), total)
            keep = (~done).nonzero().flatten()  # finished sentences stop costing work
            if keep.numel() == 0:
                break
            sentence, tokens, log_prob, limits = (
                t[keep] for t in (sentence, tokens, log_prob, limits)
            )
            state.select(keep, keep)
    return outputs


@torch.inference_mode()
def greedy_decode_reference(
    model: Transformer, src: Tensor, max_len_a: float, max_len_b: int
) -> list[list[int]]:
    """Greedy search the slow, obvious way: at every step, run the decoder over every sentence's
    whole prefix (finished ones padded) and take the last position's most likely token.
    O(n²) decoder work per sentence; kept as the reference for `greedy_decode`."""
    pad_id = model.pad_id
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


@torch.inference_mode()
def beam_search(
    model: Transformer,
    src: Tensor,
    beam_size: int,
    max_len_a: float,
    max_len_b: int,
    alpha: float = 0.0,
    nbest: int = 1,
    greedy_candidate: bool = True,
) -> list[list[Hypothesis]]:
    """Batched beam search over sentences and beams; the `nbest` best hypotheses per sentence.

    Each step extends every live hypothesis by every token and keeps the `beam_size` best
    continuations per sentence. A continuation ending in EOS that ranks among the best
    `beam_size` becomes a finished hypothesis, scored by log P / length_penalty(|Y|, alpha).
    A sentence stops once the beam has finished max(beam_size, nbest) hypotheses (the usual rule,
    which makes beam size 1 exactly greedy search), or earlier when its `nbest` best finished
    hypotheses can no longer be beaten: a live hypothesis's log-probability only falls as it
    grows, so log P / length_penalty(limit) bounds every score it can still reach.

    The greedy translation is a candidate too. Plain beam search can prune the greedy path and
    end with a worse translation than greedy search; here the search notes whether the beam
    followed the greedy path to its end (it usually does) and runs greedy search afterwards for
    the sentences where it did not, so beam search is never worse than greedy.
    `greedy_candidate=False` leaves that out: plain beam search, as the tests check it.
    """
    pad_id, k, device = model.pad_id, beam_size, src.device
    memory, src_mask = model.encode(src)
    limit_tensor = max_output_lengths(src, pad_id, max_len_a, max_len_b, model.max_length)
    limits = limit_tensor.tolist()
    # Rows are grouped by sentence: row slot * width + j is beam j of the slot-th live sentence.
    # The width is 1 at BOS, where all beams would be the same, and beam_size afterwards.
    state = model.start_decoding(memory, src_mask, capacity=max(limits), beams=k)
    live = list(range(src.size(0)))  # the sentence of each slot
    tokens = torch.full((len(live), 1), BOS_ID, dtype=torch.long, device=device)
    scores = torch.zeros(len(live), 1, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in live]
    # Where the greedy path is: its row and log-probability so far, while the beam holds it.
    greedy_prefixes: list[tuple[int, float] | None] = [(slot, 0.0) for slot in range(len(live))]
    # Sentences whose greedy path the beam did not follow to its end, with a bound on the
    # log-probability of the greedy translation (the log-probability of a prefix of it).
    unfollowed: dict[int, float] = {}
    enough = max(k, nbest)
    for step in range(1, max(limits) + 1):
        log_probs = _next_token_log_probs(model.decode_step(tokens[:, -1:], state), pad_id)
        rows, vocab = log_probs.shape
        width = rows // len(live)
        candidates = (scores[:, :, None] + log_probs.view(len(live), width, vocab)).view(
            len(live), -1
        )
        # 2k candidates: even if k of them end in EOS, k others continue.
        top_scores, top_ids = candidates.topk(min(2 * k, candidates.size(1)), dim=1)
        followed = [prefix[0] for prefix in greedy_prefixes if prefix is not None]
        greedy_next = dict(
            zip(followed, log_probs[followed].max(dim=-1).indices.tolist(), strict=True)
        )  # the greedy path's next token, in the rows that hold a greedy prefix
        next_live, kept_slots, next_greedy_prefixes = [], [], []
        parent_rows, next_tokens, next_scores = [], [], []
        for slot, sentence in enumerate(live):
            greedy_prefix = greedy_prefixes[slot]
            greedy = (
                None if greedy_prefix is None else (greedy_prefix[0], greedy_next[greedy_prefix[0]])
            )
            beams, greedy_beam, greedy_ended = [], None, False
            for rank, (score, index) in enumerate(
                zip(top_scores[slot].tolist(), top_ids[slot].tolist(), strict=True)
            ):
                if score == float("-inf") or len(beams) == k:
                    break
                row, token = slot * width + index // vocab, index % vocab
                if token == EOS_ID:
                    if rank < k:
                        output = tokens[row, 1:].tolist()
                        finished[sentence].append(
                            Hypothesis(output, score / length_penalty(step, alpha), score)
                        )
                        greedy_ended |= (row, token) == greedy
                else:
                    if (row, token) == greedy:
                        greedy_beam = len(beams)
                    beams.append((row, token, score))
            if step >= limits[sentence]:  # out of room: the live hypotheses end here
                for row, token, score in beams:
                    hypothesis = [*tokens[row, 1:].tolist(), token]
                    finished[sentence].append(
                        Hypothesis(hypothesis, score / length_penalty(step, alpha), score)
                    )
                greedy_ended |= greedy_beam is not None
                greedy_beam = None
            if greedy is not None and greedy_beam is None and not greedy_ended:
                unfollowed[sentence] = greedy_prefix[1]  # the beam pruned the greedy path
            if step >= limits[sentence] or not beams:
                continue
            best_live = max(score for _, _, score in beams)
            bounded = _cannot_improve(finished[sentence], best_live, nbest, limits[sentence], alpha)
            if len(finished[sentence]) >= enough or bounded:
                if greedy_beam is not None and not bounded:
                    # greedy might have gone on to a better ending
                    unfollowed[sentence] = beams[greedy_beam][2]
                continue
            beams += [(*beams[-1][:2], float("-inf"))] * (k - len(beams))  # pad with dead beams
            next_greedy_prefixes.append(
                None
                if greedy_beam is None
                else (len(next_live) * k + greedy_beam, beams[greedy_beam][2])
            )
            next_live.append(sentence)
            kept_slots.append(slot)
            for row, token, score in beams:
                parent_rows.append(row)
                next_tokens.append(token)
                next_scores.append(score)
        if not next_live:
            break
        rows = torch.tensor(parent_rows, device=device)
        # follow each beam's parent (widening the state after BOS); drop finished sentences
        all_kept = len(kept_slots) == len(live)
        state.select(rows, None if all_kept else torch.tensor(kept_slots, device=device))
        new_tokens = torch.tensor(next_tokens, device=device)[:, None]
        tokens = torch.cat([tokens[rows], new_tokens], dim=1)
        scores = torch.tensor(next_scores, device=device).view(len(next_live), k)
        live, greedy_prefixes = next_live, next_greedy_prefixes
    sentences = [  # those where the greedy translation might still rank among the nbest
        sentence
        for sentence, bound in sorted(unfollowed.items())
        if greedy_candidate
        and not _cannot_improve(finished[sentence], bound, nbest, limits[sentence], alpha)
    ]
    if sentences:
        index = torch.tensor(sentences, device=device)
        greedy = _greedy(model, memory[index], src_mask[index], limit_tensor[index], alpha)
        for sentence, hypothesis in zip(sentences, greedy, strict=True):
            finished[sentence].append(hypothesis)
    return [_best(hypotheses, nbest) for hypotheses in finished]


def _best(hypotheses: list[Hypothesis], nbest: int) -> list[Hypothesis]:
    """The `nbest` best distinct hypotheses (beam search may find the greedy one again)."""
    distinct: dict[tuple[int, ...], Hypothesis] = {}
    for hypothesis in sorted(hypotheses, key=lambda h: -h.score):
        distinct.setdefault(tuple(hypothesis.tokens), hypothesis)
    return list(distinct.values())[:nbest]


def _cannot_improve(
    finished: list[Hypothesis], log_prob: float, nbest: int, limit: int, alpha: float
) -> bool:
    """Whether a hypothesis whose log-probability is now `log_prob` can no longer rank among the
    `nbest` best finished ones: growing only lowers its log-probability, and its length penalty
    can grow to length_penalty(limit) at most."""
    kept = _best(finished, nbest)  # distinct: the beam may find the greedy hypothesis again
    if len(kept) < nbest:
        return False
    return kept[-1].score >= log_prob / length_penalty(limit, alpha)


@torch.inference_mode()
def score_targets(model: Transformer, src: Tensor, targets: Sequence[Sequence[int]]) -> list[float]:
    """Log-probability of each target sequence (+ EOS) given its source: force decoding."""
    pad_id = model.pad_id
    flat, offsets = flatten(targets)
    rows = np.arange(len(targets))
    tgt_in = pad_rows(flat, offsets, rows, prefix=BOS_ID).to(src.device)
    tgt_out = pad_rows(flat, offsets, rows, suffix=EOS_ID).to(src.device)
    log_probs = model(src, tgt_in).float().log_softmax(dim=-1)  # (batch, tgt_len, vocab)
    picked = log_probs.gather(-1, tgt_out[..., None]).squeeze(-1)  # (batch, tgt_len)
    return picked.masked_fill(tgt_out == pad_id, 0.0).sum(dim=1).tolist()


def _strip_eos(ids: list[int]) -> list[int]:
    return ids[:-1] if ids and ids[-1] == EOS_ID else ids
