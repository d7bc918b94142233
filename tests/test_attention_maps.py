"""`tcli translate --attention`: the saved weights are the ones the search really attended with,
rows are distributions, and the pictures hold the panels asked for."""

import json

import matplotlib.image
import pytest
import torch
from conftest import tcli

from transformer_cli import load_run
from transformer_cli.attention_maps import attention_figure, attention_of_translations
from transformer_cli.data.batching import source_tensor
from transformer_cli.decode import greedy_decode

SENTENCES = ["The woman sees the small dog.", "", "A man reads."]


def test_saved_cross_attention_is_what_greedy_search_attended_with(run_dir, tmp_path):
    result = tcli(
        "translate", run_dir, "--greedy", "--attention", tmp_path, "--device", "cpu",
        stdin="\n".join(SENTENCES) + "\n",
    )  # fmt: skip
    assert result.stdout.count("\n") == 3 and result.stdout.split("\n")[1] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "0001.cross.json", "0001.cross.png", "0003.cross.json", "0003.cross.png",
    ]  # fmt: skip
    run = load_run(run_dir, "cpu")
    for number in (1, 3):
        saved = json.loads((tmp_path / f"{number:04d}.cross.json").read_text())
        weights = torch.tensor(saved["weights"][f"mean of {run.config.model.n_heads} heads"])
        # Decode again, this time with the last layer's cross-attention keeping its weights.
        src = source_tensor(run.tokenizers.source.encode([SENTENCES[number - 1]]))
        module = run.model.decoder_layers[-1].src_tgt_attn
        module.record = True
        try:
            (hypothesis,) = greedy_decode(
                run.model, src, run.decode.max_len_a, run.decode.max_len_b
            )
        finally:
            module.record = False
        steps = torch.cat(module.recorded)[:, :, 0].mean(1)  # (steps, src_len)
        module.recorded = []
        assert saved["translation"] == result.stdout.split("\n")[number - 1]
        assert len(saved["rows"]) == steps.size(0)  # one row per decoding step
        pieces = [run.tokenizers.target.pieces[i] for i in hypothesis.tokens]
        assert saved["rows"][: len(pieces)] == pieces and saved["rows"][len(pieces) :] in (
            [],
            ["</s>"],
        )
        assert saved["columns"][-1] == "</s>" and len(saved["columns"]) == src.size(1)
        torch.testing.assert_close(weights, steps, atol=2e-6, rtol=0)
        torch.testing.assert_close(
            weights.sum(-1), torch.ones(len(saved["rows"])), atol=1e-5, rtol=0
        )
        pixels = matplotlib.image.imread(tmp_path / f"{number:04d}.cross.png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_every_head_gets_a_panel_and_masked_keys_get_no_weight(run_dir, kind):
    run = load_run(run_dir, "cpu")
    run.decode = run.decode.model_copy(update={"strategy": "beam", "beam_size": 3})
    (record,) = attention_of_translations(run, ["The man sees a woman and a dog."])
    weights = record.weights(kind, 0)  # (heads, rows, columns)
    rows, columns = record.labels(kind)
    assert weights.shape == (run.config.model.n_heads, len(rows), len(columns))
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    if kind == "decoder":  # no output piece looks at a later one
        assert torch.equal(weights.triu(1), torch.zeros_like(weights))
    figure = attention_figure(record, kind, None, "all")
    panels = [axis for axis in figure.axes if axis.get_title().startswith("head")]
    assert len(panels) == run.config.model.n_heads
    assert f"{kind} attention, layer 1 of 1" in figure.texts[0].get_text()  # the suptitle


def test_bad_attention_flags_are_one_line_errors(run_dir, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    for args, message in [
        (
            ["--attention", tmp_path, "--head", "9"],
            "--head 9: give mean, all, or a head from 1 to 2",
        ),
        (["--attention", tmp_path, "--layer", "2"], "--layer 2: the model has layers 1 to 1"),
        (["--attention", a_file], "is a file; give a directory"),
        (["--attention", tmp_path, "--attention-kind", "self"], "--attention-kind self"),
    ]:
        result = tcli("translate", run_dir, *args, "--device", "cpu", stdin="A dog.\n", check=False)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
