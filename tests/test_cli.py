"""End to end through the real `tcli` entry point: train, translate, evaluate, fail well."""

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from transformer_cli import load_run

REPO = Path(__file__).parent.parent
CORPUS = REPO / "data" / "toy-en-de"
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
            lines = (CORPUS / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
            (directory / f"{split}.{lang}").write_text("\n".join(lines[:size]) + "\n", "utf-8")
    return directory


@pytest.fixture(scope="session")
def config_file(corpus, tmp_path_factory) -> Path:
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
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def run_dir(config_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = tcli("train", config_file, "--out", out, "--device", "cpu", "--set", "train.seed=3")
    assert "best valid BLEU" in result.stdout
    return out


def test_train_writes_a_complete_run_directory(run_dir):
    for name in ("config.yaml", "tokenizer.model", "metrics.jsonl"):
        assert (run_dir / name).is_file()
    for name in ("best", "last"):
        assert (run_dir / "checkpoints" / f"{name}.safetensors").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["seed"] == 3  # the resolved config, --set included


def test_metrics_log_has_train_and_validation_records(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    valid = [r for r in records if r["kind"] == "valid"]
    assert [r["step"] for r in train] == [50, 100, 150]
    assert [r["step"] for r in valid] == [75, 150]
    assert {"loss", "lr", "tokens_per_s", "grad_norm", "elapsed_s", "epoch"} <= train[0].keys()
    assert {"loss", "ppl", "bleu", "chrf"} <= valid[0].keys()
    assert train[-1]["loss"] < train[0]["loss"]


def test_translate_from_stdin_keeps_line_count_and_order(run_dir):
    text = "The dog sleeps.\n\nThe woman sees the man.\nA\n"
    result = tcli("translate", run_dir, "--device", "cpu", stdin=text)
    lines = result.stdout.split("\n")
    assert lines[-1] == "" and len(lines) - 1 == 4  # four lines in, four out
    assert lines[1] == ""  # a blank line stays blank


def test_translate_splits_stdin_only_at_newlines_like_files(run_dir):
    # CRLF endings are one line each; a stray carriage return inside a line is not a line end.
    result = tcli("translate", run_dir, "--device", "cpu", stdin=b"The dog.\r\nThe cat\rsleeps.\n")
    assert result.stdout.count("\n") == 2


def test_invalid_utf8_on_stdin_names_the_line(run_dir):
    result = tcli("translate", run_dir, stdin=b"The dog.\nThe \xff cat.\n", check=False)
    _assert_one_line_error(result, "stdin:2: not valid UTF-8")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_translate_answers_each_typed_line_before_the_next(run_dir):
    terminal, stdin = os.openpty()  # stdin is a terminal: the interactive mode
    process = subprocess.Popen(
        [sys.executable, "-m", "transformer_cli", "translate", str(run_dir), "--device", "cpu"],
        stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(stdin)
    try:
        for sentence in (b"The dog sleeps.\n", b"The woman sees the man.\n"):
            os.write(terminal, sentence)
            ready, _, _ = select.select([process.stdout], [], [], 30)
            assert ready, "no translation while the input is still open"
            assert process.stdout.readline().strip()
        os.write(terminal, b"\x04")  # Ctrl-D: end of input
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        os.close(terminal)


def test_translate_files_matches_the_python_api(run_dir, corpus, tmp_path):
    output = tmp_path / "hyp.de"
    tcli(
        "translate", run_dir, "--input", corpus / "test.en", "--output", output, "--batch-size", "7"
    )
    hypotheses = output.read_text(encoding="utf-8").split("\n")[:-1]
    sources = (corpus / "test.en").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == len(sources) == SPLIT_SIZES["test"]
    assert load_run(run_dir, device="cpu").translate(sources) == hypotheses


def test_eval_json_scores_the_configured_test_set(run_dir):
    result = tcli("eval", run_dir, "--json", "--device", "cpu")
    scores = json.loads(result.stdout)
    assert f"best checkpoint (step {_best_valid(run_dir)['step']})" in result.stderr
    assert scores["n_sentences"] == SPLIT_SIZES["test"]
    assert 0 <= scores["bleu"] <= 100 and 0 <= scores["chrf"] <= 100
    assert scores["bleu_signature"].startswith("nrefs:1|")
    assert scores["chrf_signature"].startswith("nrefs:1|")


def test_eval_plain_output_and_existing_hypotheses(run_dir, corpus, tmp_path):
    plain = tcli("eval", run_dir, "--src", corpus / "valid.en", "--ref", corpus / "valid.de")
    assert plain.stdout.startswith("BLEU = ")
    assert "chrF2 = " in plain.stdout and "BLEU signature: nrefs:1" in plain.stdout
    # Scoring the references against themselves is perfect.
    ref = corpus / "valid.de"
    perfect = json.loads(tcli("eval", "--hyp", ref, "--ref", ref, "--json").stdout)
    assert perfect["bleu"] == 100.0 and perfect["n_sentences"] == SPLIT_SIZES["valid"]


def _best_valid(run_dir: Path) -> dict:
    """The first validation record with the highest BLEU: the one `best` was saved at."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max((r for r in records if r["kind"] == "valid"), key=lambda r: r["bleu"])


def test_valid_bleu_in_the_log_matches_eval_of_the_best_checkpoint(run_dir, corpus):
    best = _best_valid(run_dir)
    assert best["bleu"] > 0  # else the comparison below would prove nothing
    args = ("eval", run_dir, "--src", corpus / "valid.en", "--ref", corpus / "valid.de", "--json")
    assert json.loads(tcli(*args).stdout)["bleu"] == pytest.approx(best["bleu"], abs=0.01)


def _assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcli: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_existing_run_is_not_overwritten_without_asking(run_dir, config_file):
    before = (run_dir / "checkpoints" / "best.safetensors").read_bytes()
    result = tcli("train", config_file, "--out", run_dir, check=False)
    _assert_one_line_error(result, str(run_dir), "--overwrite")
    assert (run_dir / "checkpoints" / "best.safetensors").read_bytes() == before


def test_bad_config_key_is_one_line_naming_the_key(config_file, tmp_path):
    result = tcli(
        "train", config_file, "--out", tmp_path / "r", "--set", "model.heads=2", check=False
    )
    _assert_one_line_error(result, "model.heads", "unknown key")
    assert not (tmp_path / "r").exists()


def test_misaligned_data_is_one_line_naming_both_files(config_file, corpus, tmp_path):
    short = tmp_path / "short.de"
    short.write_text("Nur eine Zeile.\n")
    args = ("train", config_file, "--out", tmp_path / "r", "--set", f"data.train.tgt={short}")
    result = tcli(*args, check=False)
    _assert_one_line_error(result, "train.en has 600 lines", "short.de has 1")
    assert not (tmp_path / "r").exists()  # nothing written for a run that cannot start


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device_is_a_clear_error(run_dir):
    result = tcli("translate", run_dir, "--device", "cuda", check=False)
    _assert_one_line_error(result, "--device cuda", "not available")


def test_debug_flag_shows_the_traceback(tmp_path):
    result = tcli("translate", tmp_path, "--debug", check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr and "RunError" in result.stderr


@pytest.mark.parametrize("command", ["train", "translate", "eval"])
def test_every_command_has_help_with_an_example(command):
    result = tcli(command, "--help")
    assert "Example" in result.stdout and f"tcli {command}" in result.stdout
