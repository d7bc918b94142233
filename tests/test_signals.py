"""Ctrl-C and SIGTERM during training: stop after the step, save, resume; twice: abort."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, tcli, tiny_config, tiny_config_dict

from transformer_cli import checkpoint
from transformer_cli.checkpoint import latest_step
from transformer_cli.errors import Interrupted
from transformer_cli.records import read_records
from transformer_cli.train import resume, train


@pytest.fixture
def endless_config(corpus, tmp_path) -> Path:
    """A run that would go on for hours unless stopped; every step logged."""
    path = tmp_path / "endless.yaml"
    config = tiny_config_dict(corpus, max_steps=1_000_000, eval_every=1_000_000, log_every=1)
    path.write_text(yaml.safe_dump(config))
    return path


def _start_training(config: Path, run_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "transformer_cli", "train", str(config), "--out", str(run_dir)]
    return subprocess.Popen(
        [*command, "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )


def _wait_for_steps(run_dir: Path, steps: int, process: subprocess.Popen) -> None:
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + 120
    while time.monotonic() < deadline:
        if metrics.exists() and len(read_records(metrics)) >= steps:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("training did not start")


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_signal_saves_a_checkpoint_that_resumes(endless_config, tmp_path, signum, exit_code):
    run_dir = tmp_path / "run"
    process = _start_training(endless_config, run_dir)
    _wait_for_steps(run_dir, 3, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == exit_code
    assert "Traceback" not in stderr
    assert f"Resume with: tcli train --resume {run_dir}" in stderr.strip().splitlines()[-1]
    step = latest_step(run_dir / "checkpoints")
    assert step is not None and step >= 3
    assert max(r["step"] for r in read_records(run_dir / "metrics.jsonl")) == step

    tcli("train", "--resume", run_dir, "--device", "cpu", "--set", f"train.max_steps={step + 2}")
    assert latest_step(run_dir / "checkpoints") == step + 2


def test_second_ctrl_c_during_a_checkpoint_write_aborts_and_corrupts_nothing(
    corpus, tmp_path, monkeypatch
):
    run_dir = tmp_path / "run"
    real_save = torch.save
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background

    def save_then_ctrl_c_twice(state, file):
        if state["step"] == 4:  # half-way through writing step 4's training state
            file.write(b"partial")
            os.kill(os.getpid(), signal.SIGINT)  # asks to stop after the step ...
            os.kill(os.getpid(), signal.SIGINT)  # ... and the second press aborts right here
        real_save(state, file)

    monkeypatch.setattr(checkpoint.torch, "save", save_then_ctrl_c_twice)
    with pytest.raises(Interrupted, match="aborted by SIGINT at step 4") as err:
        train(tiny_config(corpus, max_steps=10, eval_every=2), run_dir, device="cpu")
    assert err.value.exit_code == 130

    directory = run_dir / "checkpoints"
    assert latest_step(directory) == 2  # the pointer still names the last whole checkpoint
    assert (
        not list(directory.glob(".*.tmp")) and not (directory / "step-00000004.state.pt").exists()
    )
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert resume(run_dir, ["train.max_steps=5"], device="cpu").steps == 5
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored
