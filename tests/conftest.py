"""Shared fixtures: a slice of the bundled corpus and a tiny config that trains in seconds."""

import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import yaml

from transformer_cli.config import Config, validate_config

REPO = Path(__file__).parent.parent
SPLIT_SIZES = {"train": 600, "valid": 20, "test": 30}


def tcli(
    *args: object, stdin: str | bytes = b"", check: bool = True
) -> subprocess.CompletedProcess:
    """Run `python -m transformer_cli ARGS` as a user would; stdout and stderr decoded as UTF-8."""
    result = subprocess.run(
        [sys.executable, "-m", "transformer_cli", *map(str, args)],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    result.stdout, result.stderr = result.stdout.decode(), result.stderr.decode()
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """The head of each bundled split: enough to train a few steps in seconds."""
    directory = tmp_path_factory.mktemp("corpus")
    for split, size in SPLIT_SIZES.items():
        for lang in ("en", "de"):
            source = REPO / "data" / "toy-en-de" / f"{split}.{lang}"
            lines = source.read_text(encoding="utf-8").splitlines()[:size]
            (directory / f"{split}.{lang}").write_text("\n".join(lines) + "\n", "utf-8")
    return directory


def weights(path: Path) -> dict:
    """The tensors of a safetensors file."""
    return safetensors.torch.load_file(str(path))


def tiny_config_dict(corpus: Path, **train: object) -> dict:
    """configs/toy.yaml shrunk to a model that trains 150 steps in a few seconds on a CPU."""
    raw = yaml.safe_load((REPO / "configs" / "toy.yaml").read_text())
    for split in SPLIT_SIZES:
        raw["data"][split] = {
            "src": str(corpus / f"{split}.en"),
            "tgt": str(corpus / f"{split}.de"),
        }
    raw["tokenizer"]["vocab_size"] = 300
    raw["model"].update(d_model=64, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=128)
    # Long enough to learn some German (a non-zero BLEU), short enough to take seconds.
    raw["train"].update(
        max_steps=150, max_minutes=None, batch_tokens=1000, eval_every=75, log_every=50,
        lr=0.005, warmup_steps=30,
    )  # fmt: skip
    raw["train"].update(train)
    return raw


def tiny_config(corpus: Path, **train: object) -> Config:
    return validate_config(tiny_config_dict(corpus, **train))


@pytest.fixture(scope="session")
def config_file(corpus, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(corpus)))
    return path


@pytest.fixture(scope="session")
def run_dir(config_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = tcli("train", config_file, "--out", out, "--device", "cpu", "--set", "train.seed=3")
    assert "done: best valid BLEU" in result.stderr and "(max_steps)" in result.stderr
    assert result.stderr.count("best valid BLEU") == 1  # the summary, once
    return out
