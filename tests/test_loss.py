"""The fused vocabulary projection + label-smoothed cross entropy against plain references."""

import pytest
import torch
import torch.nn.functional as F

import transformer_cli.loss as loss_module
from transformer_cli.data.batching import Batch
from transformer_cli.loss import linear_cross_entropy, sequence_loss
from transformer_cli.model import ModelConfig, Transformer


def test_loss_is_cross_entropy_over_non_pad_targets_smoothed_over_outputs_only():
    torch.manual_seed(4)
    config = ModelConfig(
        d_model=8, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=16, dropout=0.0
    )
    model = Transformer(config, 7, 7)
    batch = Batch.from_ids([[4, 5], [6]], [[4, 5], [6]])  # row 2's target is one token shorter
    logits = model(batch.src, batch.tgt_in)  # (2, 3, 7)
    smoothing = 0.1
    expected = 0.0
    for b in range(2):
        for t in range(3):
            if batch.tgt_out[b, t] == 0:  # PAD is not scored
                continue
            log_probs = logits[b, t].log_softmax(-1)
            outputs = log_probs[[1, 3, 4, 5, 6]]  # smoothing skips PAD (0) and BOS (2)
            expected += (
                -(1 - smoothing) * log_probs[batch.tgt_out[b, t]] - smoothing * outputs.mean()
            )
    assert int((batch.tgt_out == 0).sum()) == 1
    torch.testing.assert_close(sequence_loss(model, batch, smoothing), expected)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("chunk_elements", [1 << 21, 50])  # one chunk; many uneven chunks
def test_fused_loss_and_gradients_equal_autograd_through_full_logits(
    monkeypatch, smoothing, chunk_elements
):
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", chunk_elements)
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=gen, requires_grad=True)
    weight = torch.randn(11, 16, generator=gen, requires_grad=True)
    bias = torch.randn(11, generator=gen, requires_grad=True)
    targets = torch.randint(0, 11, (37,), generator=gen)

    reference = F.cross_entropy(
        hidden @ weight.t() + bias, targets, label_smoothing=smoothing, reduction="sum"
    )
    expected = torch.autograd.grad(reference * 1.7, (hidden, weight, bias))
    fused = linear_cross_entropy(hidden, weight, bias, targets, smoothing)
    got = torch.autograd.grad(fused * 1.7, (hidden, weight, bias))  # a scaled loss, as / tokens
    torch.testing.assert_close(fused, reference)
    for name, g, e in zip(("hidden", "weight", "bias"), got, expected, strict=True):
        torch.testing.assert_close(g, e, msg=f"gradient of {name}")


@pytest.mark.parametrize("chunk_elements", [1 << 21, 50])
def test_smoothing_that_excludes_ids_equals_a_hand_built_target_distribution(
    monkeypatch, chunk_elements
):
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", chunk_elements)
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(23, 8, generator=gen, requires_grad=True)
    weight = torch.randn(9, 8, generator=gen, requires_grad=True)
    bias = torch.randn(9, generator=gen, requires_grad=True)
    targets = torch.randint(3, 9, (23,), generator=gen)
    smoothing, excluded = 0.2, (0, 2)
    target_distribution = torch.full((23, 9), smoothing / 7)  # 9 ids, 2 never output
    target_distribution[:, list(excluded)] = 0.0
    target_distribution[torch.arange(23), targets] += 1 - smoothing
    assert torch.allclose(target_distribution.sum(-1), torch.ones(23))
    log_probs = (hidden @ weight.t() + bias).log_softmax(-1)
    reference = -(target_distribution * log_probs).sum()
    expected = torch.autograd.grad(reference, (hidden, weight, bias))
    fused = linear_cross_entropy(hidden, weight, bias, targets, smoothing, None, excluded)
    got = torch.autograd.grad(fused, (hidden, weight, bias))
    torch.testing.assert_close(fused, reference)
    for name, g, e in zip(("hidden", "weight", "bias"), got, expected, strict=True):
        torch.testing.assert_close(g, e, msg=f"gradient of {name}")


def test_fused_loss_in_bf16_stays_close_to_fp32():
    gen = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(64, 32, generator=gen), torch.randn(50, 32, generator=gen) / 6
    bias, targets = torch.zeros(50), torch.randint(0, 50, (64,), generator=gen)
    fp32 = linear_cross_entropy(hidden, weight, bias, targets, 0.1)
    bf16 = linear_cross_entropy(hidden, weight, bias, targets, 0.1, torch.bfloat16)
    assert bf16.dtype == torch.float32  # the softmax and the sum stay fp32
    torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=0)


def test_fused_loss_without_gradients_gives_the_same_value():
    gen = torch.Generator().manual_seed(2)
    hidden, weight = torch.randn(9, 4, generator=gen), torch.randn(6, 4, generator=gen)
    bias, targets = torch.randn(6, generator=gen), torch.randint(0, 6, (9,), generator=gen)
    with torch.no_grad():
        value = linear_cross_entropy(hidden, weight, bias, targets, 0.2)
    expected = F.cross_entropy(hidden @ weight.t() + bias, targets, label_smoothing=0.2,
                               reduction="sum")  # fmt: skip
    torch.testing.assert_close(value, expected)
