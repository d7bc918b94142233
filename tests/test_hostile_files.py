"""Every file tcli loads, swapped for a pickle that runs code when unpickled: the code never runs.

What tcli reads, and the loader each case below stands for:

    checkpoints/step-N.state.pt      torch.load(weights_only=True)            train --resume
    checkpoints/latest.json          json                                     --checkpoint last
    checkpoints/*.safetensors        safetensors (best, step-N, average-*,    translate, eval,
                                     a --checkpoint path)                     export, average
    config.yaml                      YAML's safe loader (also a CONFIG file)  every RUN_DIR command
    tokenizer*.model                 SentencePiece (also tokenizer.model in   translate, eval,
                                     a config)                                export, explain
    metrics.jsonl                    json, line by line                       plot, train --resume
    cache/train.json, *.offsets.npy  json, .npy without pickles, a memory     train --resume
    and *.ids                        map of raw ids

A file that is refused ends the command with one line naming it (exit 2). The cache is derived
data: a damaged one is encoded again, with a warning naming the file.
"""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tcli

from transformer_cli.config import load_config
from transformer_cli.errors import ConfigError

RESUME = ("train", "--resume", "{run}", "--set", "train.max_steps={next_step}", "--device", "cpu")


class Payload:
    """Unpickling it creates `marker`: the proof that a loader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return Path.touch, (self.marker,)


def write_payload(path: Path, marker: Path) -> None:
    torch.save({"weights": Payload(marker)}, path)


@pytest.fixture
def run(run_dir, tmp_path) -> Path:
    """A copy of the trained tiny run, to put payloads in."""
    return shutil.copytree(run_dir, tmp_path / "run")


def run_command(run: Path, name: str, command: tuple[str, ...], tmp_path: Path):
    """Put a payload in place of `name` in `run` and run `command` on it."""
    step = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    path = run / name.format(step=f"{step:08d}")
    marker = tmp_path / "payload-ran"
    write_payload(path, marker)
    fields = {"run": run, "next_step": step + 1, "out": tmp_path / "out"}
    result = tcli(*(arg.format(**fields) for arg in command), check=False)
    return path, marker, result


def test_the_payload_runs_when_unpickled_without_weights_only(tmp_path):
    marker = tmp_path / "payload-ran"
    write_payload(tmp_path / "payload.pt", marker)
    torch.load(tmp_path / "payload.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("checkpoints/step-{step}.state.pt", RESUME),
        ("checkpoints/latest.json", ("translate", "{run}", "--checkpoint", "last")),
        ("checkpoints/best.safetensors", ("translate", "{run}")),
        ("checkpoints/step-{step}.safetensors", ("average", "{run}", "--last", "2")),
        ("config.yaml", ("eval", "{run}", "--device", "cpu")),
        ("tokenizer.model", ("export", "{run}", "{out}")),
        ("metrics.jsonl", ("plot", "{run}")),
        ("metrics.jsonl", RESUME),
    ],
    ids=lambda value: value[0] if isinstance(value, tuple) else value,
)
def test_a_pickle_in_place_of_a_file_is_refused_in_one_line_and_never_runs(
    run, tmp_path, name, command
):
    path, marker, result = run_command(run, name, command, tmp_path)
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("tcli: error: ") and str(path) in last_line


@pytest.mark.parametrize(
    "name", ["cache/train.json", "cache/train.src.offsets.npy", "cache/train.tgt.ids"]
)
def test_a_pickle_in_the_corpus_cache_is_encoded_over_with_a_warning_and_never_runs(
    run, tmp_path, name
):
    path, marker, result = run_command(run, name, RESUME, tmp_path)
    assert not marker.exists()
    assert result.returncode == 0, result.stderr
    assert f"the cached corpus is damaged ({path}" in result.stderr
    assert "encoding the training data" in result.stderr
    assert not path.read_bytes().startswith(b"PK")  # no longer torch's zip: encoded over


def test_a_yaml_tag_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    config = tmp_path / "config.yaml"
    config.write_text(f"data: !!python/object/apply:pathlib.Path.touch ['{marker}']\n")
    with pytest.raises(ConfigError, match=re.escape(f"{config}:1: invalid YAML")):
        load_config(config)
    assert not marker.exists()
