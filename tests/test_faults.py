"""kill -9 at random moments of a real `tcli train`, again and again: every time `--resume` goes on
from the last complete checkpoint, and the run ends with the weights of one that never stopped.

CI runs a short loop; the long one is marked `long` (deselected by default):

    .venv/bin/python -m pytest -m long tests/test_faults.py
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from conftest import REPO, tcli, tiny_config_dict

from transformer_cli.checkpoint import latest_step
from transformer_cli.records import read_records

MAX_STEPS, EVAL_EVERY = 40, 4

# Runs tcli, killing itself with SIGKILL just before the rename that would put the file named
# by argv[1] in place: mid-checkpoint, with some files of the step written and some not.
DIE_WHILE_WRITING = """
import os, signal, sys
from transformer_cli.cli import main
target, replace = sys.argv[1], os.replace
def replace_or_die(src, dst):
    if os.path.basename(dst) == target:
        os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst)
os.replace = replace_or_die
main(sys.argv[2:])
"""


@pytest.fixture(scope="module")
def kill_config(corpus, tmp_path_factory) -> Path:
    raw = tiny_config_dict(corpus, max_steps=MAX_STEPS, eval_every=EVAL_EVERY, keep_last=2)
    raw["model"]["dropout"] = 0.1  # a resumed process must draw the same dropout masks
    path = tmp_path_factory.mktemp("faults") / "kill.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def uninterrupted(kill_config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "straight"
    tcli("train", kill_config, "--out", out, "--device", "cpu")
    return out


def _training_seconds(run: Path) -> float:
    """How long the run trained (validation included), from its metrics.jsonl."""
    return max(record["elapsed_s"] for record in read_records(run / "metrics.jsonl"))


def _launch(args: list[object], die_at: str | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "transformer_cli"]
    if die_at is not None:
        command = [sys.executable, "-c", DIE_WHILE_WRITING, die_at]
    return subprocess.Popen(
        [*command, *map(str, args), "--device", "cpu"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_until_training(process: subprocess.Popen, run: Path, log_size: int) -> None:
    """Until the process has started its work (its first line in train.log): a kill then hits
    training, validating or writing, not Python starting up. The first launch waits for a
    checkpoint, so that there is something to resume from."""
    first = log_size == 0
    log = run / "train.log"
    while process.poll() is None:
        if (
            (latest_step(run / "checkpoints") is not None)
            if first
            else (log.stat().st_size > log_size)
        ):
            return
        time.sleep(0.02)


def _kill_loop(config: Path, run: Path, kills: int, seed: int, seconds: float) -> list[str]:
    """Train `run` as `config` says (`seconds` of training without a stop), killing it `kills`
    times; return what each kill hit."""
    rng, checkpoints, hits = random.Random(seed), run / "checkpoints", []
    for number in range(kills):
        if latest_step(checkpoints) == MAX_STEPS:  # killed after its last checkpoint
            break
        args = ["train", config, "--out", run] if number == 0 else ["train", "--resume", run]
        log_size = (run / "train.log").stat().st_size if number else 0
        last = latest_step(checkpoints) or 0
        left = seconds * (MAX_STEPS - last) / MAX_STEPS  # about what is left to train
        if number % 2:  # mid-write: die before one of the next checkpoint's files is in place
            step = last + EVAL_EVERY * rng.randint(1, 2)
            if step >= MAX_STEPS:
                step = MAX_STEPS
            name = rng.choice([f"step-{step:08d}.safetensors", f"step-{step:08d}.state.pt",
                               "latest.json", "best.safetensors"])  # fmt: skip
            process = _launch(args, die_at=name)
            hits.append(f"writing {name}")
        else:  # a random moment: starting, training, validating or writing
            process = _launch(args)
            _wait_until_training(process, run, log_size)
            delay = rng.uniform(0.0, 0.8 * left)
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
            hits.append(f"{delay:.2f} s in")
        _, stderr = process.communicate(timeout=300)
        if process.returncode == 0:  # it finished before the kill came
            hits[-1] += " (finished first)"
            break
        assert process.returncode == -signal.SIGKILL, stderr.decode()
        assert latest_step(checkpoints) is not None
        hits[-1] += f" (after step {latest_step(checkpoints)})"
    if latest_step(checkpoints) != MAX_STEPS:
        tcli("train", "--resume", run, "--device", "cpu")
    return hits


def _assert_same_weights(expected: Path, got: Path) -> None:
    for name in (f"step-{MAX_STEPS:08d}.safetensors", "best.safetensors"):
        a = safetensors.torch.load_file(str(expected / "checkpoints" / name))
        b = safetensors.torch.load_file(str(got / "checkpoints" / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"  # bit for bit


def _kill_loop_ends_like_an_uninterrupted_run(config, uninterrupted, run, kills, seed) -> None:
    hits = _kill_loop(config, run, kills, seed, _training_seconds(uninterrupted))
    print("kills:", "; ".join(hits))
    landed = sum("finished first" not in hit for hit in hits)
    assert landed >= max(2, kills // 2), hits  # a kill after the last step proves nothing
    _assert_same_weights(uninterrupted, run)
    assert not list(run.rglob("*.tmp"))  # what the killed processes left, resuming removed


def test_kill_9_in_a_loop_ends_with_the_uninterrupted_weights(kill_config, uninterrupted, tmp_path):
    _kill_loop_ends_like_an_uninterrupted_run(
        kill_config, uninterrupted, tmp_path / "run", kills=3, seed=0
    )


@pytest.mark.long
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_twenty_times_ends_with_the_uninterrupted_weights(
    kill_config, uninterrupted, tmp_path, seed
):
    _kill_loop_ends_like_an_uninterrupted_run(
        kill_config, uninterrupted, tmp_path / "run", kills=int(os.environ.get("KILLS", 20)),
        seed=seed,
    )  # fmt: skip
