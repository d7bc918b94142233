"""Checkpoints (checkpoint.py): atomic writes, averaging, loading weights of another shape."""

import os

import pytest
import safetensors.torch
import torch
from conftest import weights

from transformer_cli.checkpoint import (
    average_checkpoints,
    latest_step,
    load_training_state,
    load_weights,
    save_checkpoint,
    save_weights,
)
from transformer_cli.errors import FileWriteError, RunError
from transformer_cli.model import ModelConfig, Transformer


def test_crash_between_write_and_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path, 1, model, {"step": 1})
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    real_replace = os.replace

    def crash_on_state_file(src, dst):
        if str(dst).endswith(".state.pt"):
            raise OSError("simulated power cut")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_state_file)
    with torch.no_grad():
        model.weight += 1
    with pytest.raises(
        FileWriteError, match=r"cannot write .*step-00000002\.state\.pt: .*power cut"
    ):
        save_checkpoint(tmp_path, 2, model, {"step": 2})
    monkeypatch.setattr(os, "replace", real_replace)

    assert latest_step(tmp_path) == 1  # the pointer still names the complete checkpoint
    assert load_training_state(tmp_path, 1) == {"step": 1}
    for name, content in before.items():
        assert (tmp_path / name).read_bytes() == content
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / "step-00000002.state.pt").exists()


def test_averaging_copies_of_one_checkpoint_gives_it_back(tmp_path):
    model = torch.nn.Linear(5, 3)
    for name in ("a", "b", "c"):
        safetensors.torch.save_model(model, str(tmp_path / f"{name}.safetensors"))
    paths = [tmp_path / f"{name}.safetensors" for name in "abc"]
    average_checkpoints(paths, tmp_path / "avg.safetensors")
    original, averaged = weights(paths[0]), weights(tmp_path / "avg.safetensors")
    assert all(torch.equal(original[k], averaged[k]) for k in original)


def test_averaging_two_checkpoints_gives_their_mean(tmp_path):
    first, second = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    safetensors.torch.save_model(first, str(tmp_path / "1.safetensors"))
    safetensors.torch.save_model(second, str(tmp_path / "2.safetensors"))
    average_checkpoints(
        [tmp_path / "1.safetensors", tmp_path / "2.safetensors"], tmp_path / "m.safetensors"
    )
    averaged = weights(tmp_path / "m.safetensors")
    torch.testing.assert_close(averaged["weight"], (first.weight + second.weight).detach() / 2)
    torch.testing.assert_close(averaged["bias"], (first.bias + second.bias).detach() / 2)


def test_weights_of_another_shape_say_which_parameter_differs(tmp_path):
    small = Transformer(ModelConfig.base(d_model=16, n_heads=2, d_ff=32), 20, 20)
    save_weights(small, tmp_path / "small.safetensors", {})
    large = Transformer(ModelConfig.base(d_model=32, n_heads=2, d_ff=32), 20, 20)
    with pytest.raises(RunError, match=r"cannot load checkpoint .* size mismatch for \w"):
        load_weights(large, tmp_path / "small.safetensors")
