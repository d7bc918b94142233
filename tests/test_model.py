"""Properties of the whole encoder-decoder: causality, padding invariance, structure."""

import math

import pytest
import torch

from transformer_cli.data.batching import Batch, pad_sequences, source_tensor
from transformer_cli.decode import greedy_decode
from transformer_cli.model import Transformer, TransformerConfig
from transformer_cli.model.layers import PositionalEncoding, sinusoidal_positions
from transformer_cli.trainer import sequence_loss

VOCAB = 24


@pytest.fixture
def model() -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(
        src_vocab_size=VOCAB,
        tgt_vocab_size=VOCAB,
        d_model=32,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=64,
        dropout=0.0,
    )
    return Transformer(config).eval()


def _random_ids(length: int, generator: torch.Generator) -> list[int]:
    return torch.randint(4, VOCAB, (length,), generator=generator).tolist()  # no special ids


def test_changing_later_target_tokens_never_changes_earlier_outputs(model):
    gen = torch.Generator().manual_seed(1)
    src = source_tensor([_random_ids(6, gen)])
    tgt = torch.tensor([[2, *_random_ids(7, gen)]])  # BOS + 7 tokens
    logits = model(src, tgt)
    for t in range(tgt.size(1) - 1):
        changed = tgt.clone()
        changed[0, t + 1 :] = torch.tensor(_random_ids(tgt.size(1) - t - 1, gen))
        changed_logits = model(src, changed)
        torch.testing.assert_close(
            changed_logits[0, : t + 1], logits[0, : t + 1], atol=1e-6, rtol=0
        )
        # and the check can fail: the changed positions do move
        assert not torch.allclose(changed_logits[0, t + 1 :], logits[0, t + 1 :])


def test_padding_leaves_logits_at_real_positions_unchanged(model):
    gen = torch.Generator().manual_seed(2)
    src, tgt = _random_ids(5, gen), _random_ids(4, gen)
    alone = Batch.from_ids([src], [tgt])
    # Longer batch-mates force PAD after our sentence on both sides.
    padded = Batch.from_ids([src, _random_ids(11, gen)], [tgt, _random_ids(9, gen)])
    assert (padded.src[0] == 0).sum() == 6 and (padded.tgt_in[0] == 0).sum() == 5
    alone_logits = model(alone.src, alone.tgt_in)[0]
    padded_logits = model(padded.src, padded.tgt_in)[0, : alone.tgt_in.size(1)]
    torch.testing.assert_close(padded_logits, alone_logits, atol=1e-5, rtol=0)


def test_padding_leaves_greedy_translation_unchanged(model):
    gen = torch.Generator().manual_seed(3)
    sentences = [_random_ids(n, gen) for n in (3, 9, 5, 14)]
    alone = [greedy_decode(model, source_tensor([s]), 1.0, 6)[0] for s in sentences]
    together = greedy_decode(model, source_tensor(sentences), 1.0, 6)
    assert together == alone
    assert any(len(out) > 2 for out in alone)  # an untrained model still says something


def test_decoder_has_separate_self_and_cross_attention(model):
    for layer in model.decoder_layers:
        assert layer.tgt_tgt_attn is not layer.src_tgt_attn
    storages = [p.data_ptr() for p in model.parameters()]
    assert len(storages) == len(set(storages))  # no two parameters share memory


def test_forward_returns_unnormalised_logits(model):
    src = source_tensor([[5, 6, 7]])
    tgt = torch.tensor([[2, 8, 9]])
    logits = model(src, tgt)
    with torch.no_grad():
        model.output_proj.bias += 5.0  # a softmax would cancel a constant shift; logits keep it
    torch.testing.assert_close(model(src, tgt), logits + 5.0)


def test_loss_is_label_smoothed_cross_entropy_over_non_pad_targets():
    torch.manual_seed(4)
    logits = torch.randn(2, 3, 7)
    targets = torch.tensor([[4, 5, 3], [6, 3, 0]])  # the last position of row 2 is PAD
    smoothing = 0.1
    expected = 0.0
    for b in range(2):
        for t in range(3):
            if targets[b, t] == 0:
                continue
            log_probs = logits[b, t].log_softmax(-1)
            expected += -(1 - smoothing) * log_probs[targets[b, t]] - smoothing * log_probs.mean()
    torch.testing.assert_close(sequence_loss(logits, targets, smoothing), expected)


def test_sinusoidal_positions_match_the_paper_formula():
    d_model = 8
    table = sinusoidal_positions(6, d_model)
    for pos in range(6):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_positional_encoding_extends_past_its_initial_table():
    encoding = PositionalEncoding(d_model=4, initial_length=3)
    out = encoding(torch.zeros(1, 10, 4))
    torch.testing.assert_close(out[0], sinusoidal_positions(10, 4))


def test_pad_embedding_is_zero_and_padding_is_right_aligned(model):
    assert model.src_embed.weight[0].abs().max() == 0
    assert pad_sequences([[5], [5, 6, 7]]).tolist() == [[5, 0, 0], [5, 6, 7]]
