"""A step's gradient over micro-batches equals the gradient of one batch holding them all."""

import pytest
import torch

from transformer_cli.data.batching import Batch
from transformer_cli.gradients import accumulate_gradients
from transformer_cli.loss import TeacherForcedLoss
from transformer_cli.model import ModelConfig, Transformer


def test_accumulating_micro_batches_equals_one_big_batch():
    torch.manual_seed(0)
    config = ModelConfig(
        d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32, dropout=0.0
    )
    model = Transformer(config, 30, 30)
    gen = torch.Generator().manual_seed(1)
    pairs = [
        (
            torch.randint(4, 30, (n,), generator=gen).tolist(),
            torch.randint(4, 30, (m,), generator=gen).tolist(),
        )
        for n, m in [(3, 7), (9, 2), (5, 5), (12, 10), (1, 4)]
    ]
    whole = [Batch.from_ids([s for s, _ in pairs], [t for _, t in pairs])]
    parts = [
        Batch.from_ids([s for s, _ in chunk], [t for _, t in chunk])
        for chunk in (pairs[:2], pairs[2:])
    ]

    def gradients(batches):
        model.zero_grad()
        loss, tokens = accumulate_gradients(
            TeacherForcedLoss(model, 0.1), batches, torch.device("cpu")
        )
        return loss, tokens, [p.grad.clone() for p in model.parameters()]

    loss_whole, tokens_whole, grads_whole = gradients(whole)
    loss_parts, tokens_parts, grads_parts = gradients(parts)
    assert tokens_whole == tokens_parts == sum(len(t) + 1 for _, t in pairs)
    assert loss_parts == pytest.approx(loss_whole, abs=1e-6)
    for a, b in zip(grads_whole, grads_parts, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
