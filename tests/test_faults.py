"""kill -9 at random moments of a real `tcli train`, again and again: every time `--resume` goes on
from the last complete checkpoint, and the run ends with the weights of one that never stopped.

CI runs a short loop; the long one is marked `long` (deselected by default):

    .venv/bin/python -m pytest -m long tests/test_faults.py
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from conftest import REPO, tcli, tiny_config_dict

from transformer_cli.checkpoint import latest_step

EVAL_EVERY = 4  # a checkpoint every 4 steps: many moments to die at mid-write

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
def trained(corpus, tmp_path_factory) -> Callable[[int], tuple[Path, Path]]:
    """max_steps -> (config file, a run of it that was never stopped), made once each."""
    made: dict[int, tuple[Path, Path]] = {}

    def config_and_run(max_steps: int) -> tuple[Path, Path]:
        if max_steps not in made:
            raw = tiny_config_dict(
                corpus, max_steps=max_steps, eval_every=EVAL_EVERY, keep_last=2, log_every=1
            )  # a metrics record every step: the test kills at the step it chose
            raw["model"]["dropout"] = 0.1  # a resumed process must draw the same dropout masks
            directory = tmp_path_factory.mktemp("faults")
            (directory / "kill.yaml").write_text(yaml.safe_dump(raw))
            tcli(
                "train", directory / "kill.yaml", "--out", directory / "straight", "--device", "cpu"
            )
            made[max_steps] = directory / "kill.yaml", directory / "straight"
        return made[max_steps]

    return config_and_run


def _last_step_recorded(run: Path) -> int:
    """The step of the newest record in metrics.jsonl (0 if none)."""
    try:
        lines = (run / "metrics.jsonl").read_bytes().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except ValueError:  # a line cut short: the process is writing it, or was killed
            continue
    return 0


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


def _wait_for_step(process: subprocess.Popen, run: Path, step: int) -> None:
    """Until the process has recorded `step` (or ended)."""
    while process.poll() is None and _last_step_recorded(run) < step:
        time.sleep(0.005)


def _kill_loop(config: Path, run: Path, kills: int, seed: int) -> list[str]:
    """Train `run` as `config` says, killing it `kills` times; return what each kill hit."""
    rng, checkpoints, hits = random.Random(seed), run / "checkpoints", []
    max_steps = yaml.safe_load(config.read_text())["train"]["max_steps"]
    for number in range(kills):
        if latest_step(checkpoints) == max_steps:  # killed after its last checkpoint
            break
        args = ["train", config, "--out", run] if number == 0 else ["train", "--resume", run]
        last = latest_step(checkpoints) or 0
        if number % 2:  # mid-write: die before one of the next checkpoint's files is in place
            step = min(last + EVAL_EVERY * rng.randint(1, 2), max_steps)
            names = [f"step-{step:08d}.safetensors", f"step-{step:08d}.state.pt", "latest.json"]
            if max_steps - last > 10 * EVAL_EVERY:  # room left for a validation to be the best
                names.append("best.safetensors")
            name = rng.choice(names)
            process = _launch(args, die_at=name)
            hits.append(f"writing {name}")
        else:  # a random moment: training, validating or writing, after a random step
            # Past the records a killed process left (the new one drops them as it starts), and
            # past the first checkpoint, so that there is one to resume from.
            after = max(_last_step_recorded(run), EVAL_EVERY)
            if after >= max_steps - 1:
                break
            step = min(after + rng.randint(1, 3 * EVAL_EVERY), max_steps - 1)
            delay = rng.uniform(0.0, 0.05)
            process = _launch(args)
            _wait_for_step(process, run, step)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            hits.append(f"{1000 * delay:.0f} ms after step {step}")
        _, stderr = process.communicate(timeout=300)
        if process.returncode == 0:  # it finished before the kill came
            hits[-1] += " (finished first)"
            break
        assert process.returncode == -signal.SIGKILL, stderr.decode()
        assert latest_step(checkpoints) is not None
        hits[-1] += f" (after step {latest_step(checkpoints)})"
    if latest_step(checkpoints) != max_steps:
        tcli("train", "--resume", run, "--device", "cpu")
    return hits


def _assert_same_weights(expected: Path, got: Path) -> None:
    last = latest_step(expected / "checkpoints")
    for name in (f"step-{last:08d}.safetensors", "best.safetensors"):
        a = safetensors.torch.load_file(str(expected / "checkpoints" / name))
        b = safetensors.torch.load_file(str(got / "checkpoints" / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key}"  # bit for bit


def _kill_loop_ends_like_an_uninterrupted_run(trained, tmp_path, max_steps, kills, seed) -> None:
    config, uninterrupted = trained(max_steps)
    run = tmp_path / "run"
    hits = _kill_loop(config, run, kills, seed)
    print("kills:", "; ".join(hits))
    landed = sum("finished first" not in hit for hit in hits)
    assert landed >= max(2, kills // 2), hits  # a kill after the last step proves nothing
    _assert_same_weights(uninterrupted, run)
    assert not list(run.rglob("*.tmp"))  # what the killed processes left, resuming removed


def test_kill_9_in_a_loop_ends_with_the_uninterrupted_weights(trained, tmp_path):
    _kill_loop_ends_like_an_uninterrupted_run(trained, tmp_path, max_steps=40, kills=3, seed=0)


@pytest.mark.long
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_twenty_times_ends_with_the_uninterrupted_weights(trained, tmp_path, seed):
    _kill_loop_ends_like_an_uninterrupted_run(
        trained, tmp_path, max_steps=200, kills=int(os.environ.get("KILLS", 20)), seed=seed
    )
