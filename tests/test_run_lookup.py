"""Naming a run and a checkpoint: a name that is not there is answered with what is."""

import shutil
from pathlib import Path

import pytest
from conftest import tcli

from transformer_cli.errors import RunError
from transformer_cli.rundir import check_run_dir


def test_a_missing_checkpoint_lists_the_checkpoints_there_are(run_dir, tmp_path):
    run = shutil.copytree(run_dir, tmp_path / "run")
    (run / "checkpoints" / "average-last-2.safetensors").touch()
    result = tcli("translate", run, "--checkpoint", "123", check=False)
    assert result.returncode == 2
    assert result.stderr == (
        f"tcli: error: no checkpoint 123 in {run / 'checkpoints'}; "
        "there are: best, last, 75, 150, average-last-2\n"
    )


@pytest.fixture
def runs(tmp_path) -> Path:
    """runs/toy and runs/big are runs (they have a config.yaml); runs/tmp is not."""
    for name in ("toy", "big", "tmp"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    for name in ("toy", "big"):
        (tmp_path / "runs" / name / "config.yaml").touch()
    return tmp_path / "runs"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("tyo", "no run directory {runs}/tyo; did you mean {runs}/toy?"),
        ("tmq", "no run directory {runs}/tmq"),  # runs/tmp is close, but no run
        ("elsewhere", "no run directory {runs}/elsewhere"),
    ],
)
def test_a_missing_run_directory_suggests_the_closest_run(runs, typed, message):
    with pytest.raises(RunError) as raised:
        check_run_dir(runs / typed)
    assert str(raised.value) == message.format(runs=runs)


def test_a_run_directory_in_a_missing_folder_is_reported_without_a_suggestion(tmp_path):
    with pytest.raises(RunError) as raised:
        check_run_dir(tmp_path / "nowhere" / "toy")
    assert str(raised.value) == f"no run directory {tmp_path}/nowhere/toy"


@pytest.mark.parametrize(
    "command",
    [
        ("translate", "{run}"),
        ("eval", "{run}"),
        ("average", "{run}", "--last", "1"),
        ("export", "{run}", "{out}"),
        ("explain", "{run}", "--text", "a dog"),
        ("plot", "{run}"),
        ("train", "--resume", "{run}"),
    ],
    ids=lambda command: command[0],
)
def test_every_command_taking_a_run_directory_suggests_the_close_match(runs, tmp_path, command):
    typed = runs / "tyo"
    result = tcli(*(arg.format(run=typed, out=tmp_path / "out") for arg in command), check=False)
    assert result.returncode == 2
    assert result.stderr == f"tcli: error: no run directory {typed}; did you mean {runs}/toy?\n"
