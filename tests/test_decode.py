"""Greedy search: per-sentence stopping, length limits, batching."""

import torch

from transformer_cli.data.batching import source_tensor
from transformer_cli.data.tokenizer import EOS_ID, PAD_ID
from transformer_cli.decode import greedy_decode, max_output_lengths
from transformer_cli.model import DecoderState

VOCAB = 12


class ScriptedModel:
    """Stands in for the Transformer: sentence i says scripts[i], one token per step."""

    def __init__(self, scripts: list[list[int]]) -> None:
        self.scripts = scripts
        self.pad_id = PAD_ID
        self.max_length = None  # no table of positions to run out of
        self.calls = 0

    def encode(self, src):
        # The "memory" of row i carries i, so that a row can be recognised after others are dropped.
        memory = torch.arange(src.size(0), dtype=torch.float)[:, None, None].expand(-1, 1, 4)
        return memory, torch.ones(src.size(0), 1, 1, 1, dtype=torch.bool)

    def start_decoding(self, memory, src_mask, capacity, beams=1):
        return _ScriptedState(src_mask, memory[:, 0, 0].long().repeat_interleave(beams))

    def decode_step(self, tokens, state):
        self.calls += 1
        logits = torch.zeros(tokens.size(0), VOCAB)
        for row, sentence in enumerate(state.sentence.tolist()):
            script = self.scripts[sentence]
            logits[row, script[min(state.length, len(script) - 1)]] = 10.0
        state.length += 1
        return logits


class _ScriptedState(DecoderState):
    """A decoder state that knows which sentence each row decodes."""

    def __init__(self, src_mask, sentence):
        super().__init__(src_mask, [], [])
        self.sentence = sentence

    def select(self, rows, sentences=None):
        super().select(rows, sentences)
        self.sentence = self.sentence[rows]


def test_each_sentence_stops_at_its_own_eos():
    model = ScriptedModel([[5, EOS_ID], [6, 7, 8, EOS_ID], [EOS_ID]])
    src = source_tensor([[4] * 10] * 3)
    outputs = greedy_decode(model, src, max_len_a=1.0, max_len_b=5)
    assert [h.tokens for h in outputs] == [[5], [6, 7, 8], []]
    assert model.calls == 4  # stops once the slowest sentence has emitted EOS


def test_output_length_is_capped_at_a_times_source_length_plus_b():
    model = ScriptedModel([[5], [6]])  # never says EOS
    src = source_tensor([[4] * 4, [4] * 10])
    assert max_output_lengths(src, 0, 0.5, 3).tolist() == [5, 8]
    outputs = greedy_decode(model, src, max_len_a=0.5, max_len_b=3)
    assert [len(out.tokens) for out in outputs] == [5, 8]
