"""`tcli explain`: the illustrated guides' numbers, the numbers each common mistake really gives
(recomputed here with numpy), the pictures, and the walkthrough on a trained model equal to what
its forward computes."""

import sys

import numpy as np
import pytest
import torch
from conftest import tcli

from transformer_cli import load_run
from transformer_cli.errors import TcliError
from transformer_cli.explain import (
    HEAD_INPUTS,
    INPUTS,
    KEY_WEIGHTS,
    QUERY_WEIGHTS,
    TARGETS,
    VALUE_WEIGHTS,
    attention_walkthrough,
    common_mistakes,
    explain_model,
    explain_topic,
    format_steps,
    image_attention,
    mask_figure,
    multihead_walkthrough,
    positions_walkthrough,
)
from transformer_cli.model import MultiHeadAttention

FIRST_OUTPUT = [1.8638741, 6.3193707, 1.7041886]  # as the guides print it (float32)


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def _attention(q, k, v, scale):
    return _softmax(q @ np.swapaxes(k, -1, -2) / scale) @ v


def test_the_walkthrough_reproduces_the_textbook_self_attention_example():
    steps = {step.title: step.value for step in attention_walkthrough()}
    expected_scores = torch.tensor([[2, 4, 4], [4, 16, 12], [4, 12, 10]], dtype=torch.float64)
    torch.testing.assert_close(steps["scores"], expected_scores)
    torch.testing.assert_close(steps["scaled scores"], expected_scores / 3**0.5)
    torch.testing.assert_close(steps["weights"].sum(-1), torch.ones(3, dtype=torch.float64))
    first_output = torch.tensor(FIRST_OUTPUT, dtype=torch.float64)
    torch.testing.assert_close(steps["outputs"][0], first_output, atol=1e-6, rtol=0)  # as printed
    torch.testing.assert_close(steps["weighted values"].sum(0), steps["outputs"][0])


def test_the_walkthrough_prints_every_step_with_its_numbers():
    text = format_steps(attention_walkthrough())
    assert text.count("\n\n") == 8 and "9. outputs" in text and "1.863874" in text


def test_each_mistake_gives_what_that_mistake_really_computes():
    x, targets, heads_in = (np.array(m, dtype=float) for m in (INPUTS, TARGETS, HEAD_INPUTS))
    wq, wk, wv = (np.array(m, dtype=float) for m in (QUERY_WEIGHTS, KEY_WEIGHTS, VALUE_WEIGHTS))
    q, k, v = x @ wq, x @ wk, x @ wv
    pad = np.zeros((1, 3))
    bare = heads_in.reshape(2, 3, 2)  # the flat numbers cut into (heads, len, d_head)
    split = heads_in.reshape(3, 2, 2).transpose(1, 0, 2)
    merge = lambda heads: heads.transpose(1, 0, 2).reshape(3, 4)  # noqa: E731
    expected = {
        "scaling after the softmax": (
            _attention(q, k, v, 3**0.5)[0],
            (_softmax(q @ k.T) / 3**0.5 @ v)[0],
        ),
        "scaling by the sequence length": (
            _attention(q, k, v, 3**0.5)[0],
            _attention(q, k, v, 3)[0],
        ),
        "splitting heads with a bare view": (
            merge(_attention(split, split, split, 2**0.5)),
            merge(_attention(bare, bare, bare, 2**0.5)),
        ),
        "forgetting the padding mask": (
            _attention(q, k, v, 3**0.5)[0],
            _attention(*(np.vstack([m, pad]) for m in (q, k, v)), 3**0.5)[0],
        ),
        "one module for self- and cross-attention": (
            _attention(targets @ wq[::-1], x @ wk[::-1], x @ wv[::-1], 3**0.5)[0],
            _attention(targets @ wq, k, v, 3**0.5)[0],
        ),
    }
    mistakes = common_mistakes()
    assert [m.name for m in mistakes] == list(expected)
    for mistake in mistakes:
        right, wrong = expected[mistake.name]
        np.testing.assert_allclose(mistake.right.numpy(), right, atol=1e-12)
        np.testing.assert_allclose(mistake.wrong.numpy(), wrong, atol=1e-12)
        assert np.abs(right - wrong).max() > 0.05  # a mistake that changes nothing shows nothing
    np.testing.assert_allclose(
        mistakes[3].right.numpy(), FIRST_OUTPUT, atol=1e-6
    )  # masked = unpadded


def test_multihead_walkthrough_splits_features_per_head_and_merges_them_back():
    steps = multihead_walkthrough()
    x, heads, merged, output = steps[0].value, steps[2].value, steps[5].value, steps[6].value
    assert heads.shape == (1, 2, 3, 2)
    torch.testing.assert_close(heads[0, 1], x[0, :, 2:])  # head 2: features 3-4 of every input
    per_head = steps[4].value
    torch.testing.assert_close(merged[0], torch.cat([per_head[0, 0], per_head[0, 1]], dim=-1))
    module = MultiHeadAttention(4, 2).double()
    with torch.no_grad():  # identity projections, built independently of the walkthrough
        module.qkv_proj.weight.copy_(torch.eye(4).repeat(3, 1))
        module.out_proj.weight.copy_(torch.eye(4))
        module.qkv_proj.bias.zero_()
        module.out_proj.bias.zero_()
    torch.testing.assert_close(output, module(x).detach())


def test_positions_compare_by_offset_alone():
    products = positions_walkthrough()[2].value[0]
    torch.testing.assert_close(products, products[0].expand(4))


def test_a_pixel_attends_to_the_pixels_of_its_own_kind():
    features, weights = image_attention()
    row = weights[1 * 8 + 1]  # pixel (1, 1), an A
    same_kind = features[0].flatten().bool()
    assert row[same_kind].min() > 10 * row[~same_kind].max()
    torch.testing.assert_close(weights.sum(-1), torch.ones(64))


def test_mask_picture_has_one_panel_per_mask():
    figure = mask_figure()
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert [axis.get_title() for axis in panels] == [
        "padding mask",
        "causal mask",
        "sentence 2: padding & causal",
    ]


@pytest.mark.parametrize("topic", ["masks", "positions", "image"])
def test_topics_with_pictures_write_a_png(topic, tmp_path):
    text = explain_topic(topic, tmp_path)
    picture = tmp_path / f"{topic}.png"
    assert f"wrote {picture}" in text
    import matplotlib.image

    pixels = matplotlib.image.imread(picture)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 250 <= pixels.shape[0] <= 1200 and 300 <= pixels.shape[1] <= 1600
    assert picture.stat().st_size < 150_000


def test_missing_matplotlib_is_one_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(TcliError, match=r"pip install 'transformer-cli\[plot\]'"):
        explain_topic("masks", tmp_path)
    assert not (tmp_path / "masks.png").exists()


def test_explain_prints_the_asserted_numbers_and_the_mistakes():
    result = tcli("explain")
    assert "1.863874" in result.stdout and "6.319371" in result.stdout
    assert "Common mistakes" in result.stdout and "1.118109" in result.stdout  # after softmax
    bad = tcli("explain", "--topic", "heads", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--topic heads" in bad.stderr


@pytest.mark.parametrize("head", [0, 1])
def test_explain_on_a_trained_model_equals_its_forward(run_dir, head):
    run = load_run(run_dir, "cpu")
    model, text = run.model, "The woman sees the small dog."
    walkthrough = explain_model(model, run.tokenizers.source, text, head)
    steps = {step.title.split(",")[0]: step.value for step in walkthrough.steps}

    attention = model.encoder_layers[0].src_src_attn
    seen = {}
    hooks = [
        attention.register_forward_pre_hook(lambda _, args: seen.setdefault("input", args[0])),
        attention.register_forward_hook(lambda _, args, out: seen.setdefault("output", out)),
    ]
    src = torch.tensor([run.tokenizers.source.encode([text])[0] + [3]])
    try:
        with torch.no_grad():
            model(src, torch.tensor([[2]]))
            maps = model.attention(src, torch.tensor([[2]]))
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(steps["layer input"], seen["input"][0, :, :4])
    torch.testing.assert_close(walkthrough.weights, maps.encoder[0][0, head])
    # The module's output is out_proj(merged heads): undo the projection, take this head's slice.
    out_proj = attention.out_proj
    merged = torch.linalg.solve(out_proj.weight, (seen["output"][0] - out_proj.bias).T).T
    d_head = attention.d_head
    torch.testing.assert_close(
        steps["head output"], merged[:, head * d_head : head * d_head + 4], atol=1e-4, rtol=1e-4
    )
    assert len(walkthrough.pieces) == src.size(1) and walkthrough.pieces[-1] == "</s>"


def test_explain_run_dir_prints_the_walkthrough_and_saves_the_heatmap(run_dir, tmp_path):
    result = tcli(
        "explain", run_dir, "--text", "The dog sleeps.", "--head", "2", "--out", tmp_path,
        "--device", "cpu",
    )  # fmt: skip
    assert "8. weights" in result.stdout and "▁The" in result.stdout
    assert (tmp_path / "encoder-layer1-head2.png").stat().st_size > 1000
    bad = tcli("explain", run_dir, "--text", "x", "--head", "3", "--device", "cpu", check=False)
    assert bad.returncode == 2 and "--head 3: the model has heads 1 to 2" in bad.stderr
