"""Attention against a worked example, against torch.nn.MultiheadAttention, and on masked rows."""

import math

import pytest
import torch

from transformer_cli.model import (
    MultiHeadAttention,
    SelfAttention2d,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)

# The classic worked example: three 4-dimensional inputs, 3-dimensional queries/keys/values.
INPUTS = torch.tensor([[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]], dtype=torch.float64)
W_K = torch.tensor([[0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.float64)
W_Q = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float64)
W_V = torch.tensor([[0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]], dtype=torch.float64)


def test_worked_example_unscaled_scores_and_softmax():
    q, k = INPUTS @ W_Q, INPUTS @ W_K
    scores = q @ k.T
    assert scores.tolist() == [[2, 4, 4], [4, 16, 12], [4, 12, 10]]
    torch.testing.assert_close(
        scores[0].softmax(-1),
        torch.tensor([0.063379, 0.468311, 0.468311], dtype=torch.float64),
        atol=1e-6,
        rtol=0,
    )


def test_worked_example_scales_by_sqrt_d_head_before_softmax():
    output, weights = scaled_dot_product_attention(INPUTS @ W_Q, INPUTS @ W_K, INPUTS @ W_V)
    torch.testing.assert_close(
        weights[0],
        torch.tensor([0.13612579, 0.43193707, 0.43193707], dtype=torch.float64),
        atol=1e-7,
        rtol=0,
    )
    expected = torch.tensor(
        [
            [1.8638741, 6.3193707, 1.7041886],
            [1.9991105, 7.8141265, 0.27347228],
            [1.9925548, 7.479635, 0.73587704],
        ],
        dtype=torch.float64,
    )
    # The published outputs are rounded in their 7th significant digit (the exact value at (1, 1)
    # is 7.81412350, printed as 7.8141265), hence 5e-6 rather than 1e-6.
    torch.testing.assert_close(output, expected, atol=5e-6, rtol=0)


def test_masks_follow_the_true_means_attend_convention():
    tokens = torch.tensor([[5, 6, 0], [7, 0, 0]])
    assert padding_mask(tokens, pad_id=0).shape == (2, 1, 1, 3)
    assert padding_mask(tokens, pad_id=0)[:, 0, 0].tolist() == [
        [True, True, False],
        [True, False, False],
    ]
    brute_force = [[key <= query for key in range(4)] for query in range(4)]
    assert causal_mask(4).tolist() == brute_force


def _copy_into_torch_mha(ours: MultiHeadAttention, d_model: int, n_heads: int):
    reference = torch.nn.MultiheadAttention(d_model, n_heads, batch_first=True)
    with torch.no_grad():
        if ours.cross:
            reference.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.kv_proj.weight]))
            reference.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.kv_proj.bias]))
        else:  # our fused projection has torch's layout: the q, k and v rows stacked
            reference.in_proj_weight.copy_(ours.qkv_proj.weight)
            reference.in_proj_bias.copy_(ours.qkv_proj.bias)
        reference.out_proj.weight.copy_(ours.out_proj.weight)
        reference.out_proj.bias.copy_(ours.out_proj.bias)
    return reference.eval()


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    for param in module.parameters():  # non-zero biases too, so that every weight is compared
        torch.nn.init.normal_(param, std=0.3)
    return module.eval()


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
@pytest.mark.parametrize("causal", [False, True], ids=["padding", "padding+causal"])
def test_multi_head_attention_equals_torch_multihead_attention(causal, fused):
    torch.manual_seed(0)
    d_model, n_heads, batch, length = 32, 4, 3, 7
    ours = _randomised(MultiHeadAttention(d_model, n_heads, fused=fused))
    reference = _copy_into_torch_mha(ours, d_model, n_heads)
    x = torch.randn(batch, length, d_model)
    lengths = torch.tensor([7, 4, 2])
    keep_keys = torch.arange(length)[None, :] < lengths[:, None]  # (batch, length)

    mask = keep_keys[:, None, None, :]
    if causal:
        mask = mask & causal_mask(length)
    ours.record = not fused  # the fused kernel keeps no weights: compare them explicitly only
    out = ours(x, mask=mask)
    ref_out, ref_weights = reference(
        x, x, x,
        key_padding_mask=~keep_keys,  # torch: True means ignore
        attn_mask=~causal_mask(length) if causal else None,
        average_attn_weights=False,
    )  # fmt: skip
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    if not fused:
        torch.testing.assert_close(ours.recorded[0], ref_weights, atol=1e-5, rtol=0)


def test_cross_attention_with_different_lengths_equals_torch():
    torch.manual_seed(1)
    d_model, n_heads = 24, 3
    ours = _randomised(MultiHeadAttention(d_model, n_heads, cross=True))
    reference = _copy_into_torch_mha(ours, d_model, n_heads)
    query, memory = torch.randn(2, 5, d_model), torch.randn(2, 9, d_model)
    keep_keys = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    out = ours(query, memory, keep_keys[:, None, None, :])
    ref_out, _ = reference(query, memory, memory, key_padding_mask=~keep_keys)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_fused_and_explicit_paths_give_the_same_outputs_and_gradients(cross):
    torch.manual_seed(2)
    explicit = _randomised(MultiHeadAttention(16, 4, cross=cross))
    fused = MultiHeadAttention(16, 4, cross=cross, fused=True).eval()
    fused.load_state_dict(explicit.state_dict())
    x, memory = torch.randn(3, 6, 16), torch.randn(3, 6, 16)
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]]).bool()
    mask = keep[:, None, None, :] & (causal_mask(6) if not cross else True)
    results = []
    for module in (explicit, fused):
        inputs = (x.clone().requires_grad_(), memory.clone().requires_grad_())
        out = module(inputs[0], inputs[1] if cross else None, mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out, inputs[0].grad, *(p.grad for p in module.parameters())))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_explicit_attention_passes_gradcheck_with_masks():
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = causal_mask(4) & torch.tensor([True, True, True, False])  # causal and one padded key
    assert torch.autograd.gradcheck(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0], (q, k, v)
    )


def test_fully_masked_row_gives_zeros_not_nan():
    q = torch.randn(2, 3, 4, requires_grad=True)
    k = torch.randn(2, 5, 4, requires_grad=True)
    v = torch.randn(2, 5, 4, requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of sentence 0 may attend to nothing
    mask[1] = False  # nor may any query of sentence 1
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    assert torch.isfinite(output).all() and torch.isfinite(weights).all()
    assert output[0, 1].abs().max() == 0 and output[1].abs().max() == 0
    assert weights[0, 1].sum() == 0
    torch.testing.assert_close(weights[0, 0].sum(), torch.tensor(1.0))
    output.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_masked_keys_get_exactly_zero_weight():
    q, k, v = torch.randn(1, 2, 8), torch.randn(1, 6, 8), torch.randn(1, 6, 8)
    mask = torch.tensor([True, True, True, False, False, False])
    _, weights = scaled_dot_product_attention(q, k, v, mask)
    assert weights[..., 3:].abs().max() == 0
    # and the unmasked keys share the whole weight as a softmax over them alone would
    expected = (q @ k[:, :3].transpose(-2, -1) / math.sqrt(8)).softmax(-1)
    torch.testing.assert_close(weights[..., :3], expected)


def test_2d_self_attention_is_the_identity_at_initialisation():
    torch.manual_seed(4)
    layer = SelfAttention2d(channels=16)
    x = torch.randn(2, 16, 5, 3)
    out, weights = layer(x)
    assert torch.equal(out, x)
    assert weights.shape == (2, 15, 15)  # every pixel over all H*W pixels
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 15))


def test_2d_self_attention_matches_a_direct_computation():
    torch.manual_seed(5)
    layer = SelfAttention2d(channels=8, reduction=4)
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    x = torch.randn(2, 8, 3, 4)
    out, _ = layer(x)

    expected = torch.empty_like(x)
    for b in range(2):
        pixels = x[b].reshape(8, 12).T  # (H*W, C), one row per pixel in row-major order
        q = pixels @ layer.query.weight.view(2, 8).T + layer.query.bias
        k = pixels @ layer.key.weight.view(2, 8).T + layer.key.bias
        v = pixels @ layer.value.weight.view(8, 8).T + layer.value.bias
        weights = torch.softmax(q @ k.T / math.sqrt(2), dim=-1)  # (12, 12)
        expected[b] = x[b] + 0.7 * (weights @ v).T.reshape(8, 3, 4)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
