"""End to end through the real `tcli` entry point: train, translate, evaluate, fail well."""

import json
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import SPLIT_SIZES, tcli

from transformer_cli import load_run
from transformer_cli.checkpoint import step_checkpoints
from transformer_cli.records import TrainingLog, read_records
from transformer_cli.rundir import RunDir


def test_train_writes_a_complete_run_directory(run_dir):
    for name in ("config.yaml", "tokenizer.model", "metrics.jsonl", "train.log"):
        assert (run_dir / name).is_file()
    checkpoints = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert checkpoints == [
        "best.safetensors",
        "latest.json",
        "step-00000075.safetensors",
        "step-00000075.state.pt",
        "step-00000150.safetensors",
        "step-00000150.state.pt",
    ]
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text()) == {"step": 150}
    assert "valid loss" in (run_dir / "train.log").read_text()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["seed"] == 3  # the resolved config, --set included


def test_every_file_of_a_run_is_one_that_run_dir_names(run_dir):
    run = RunDir(run_dir)
    top = {run.config, *run.tokenizers, run.cache, run.checkpoints.root, run.metrics, run.train_log}
    assert set(run_dir.iterdir()) <= top
    steps = step_checkpoints(run.checkpoints.root)
    assert steps == [75, 150]
    files = run.checkpoints
    kept = {files.best, files.latest, *map(files.weights, steps), *map(files.state, steps)}
    assert set(run.checkpoints.root.iterdir()) == kept


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


def test_eval_names_its_bleu_tokenizer_and_takes_another(run_dir):
    default = json.loads(tcli("eval", run_dir, "--json", "--device", "cpu").stdout)
    assert "|tok:13a|" in default["bleu_signature"]  # a German target
    chars = tcli("eval", run_dir, "--json", "--bleu-tokenize", "char", "--device", "cpu")
    assert "|tok:char|" in json.loads(chars.stdout)["bleu_signature"]
    bad = tcli("eval", run_dir, "--bleu-tokenize", "words", "--device", "cpu", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "eval.bleu_tokenize: sacreBLEU has no tokenizer 'words'" in bad.stderr


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


def test_average_of_the_last_checkpoints_is_usable_by_eval_and_translate(run_dir, corpus):
    result = tcli("average", run_dir, "--last", "2")
    averaged = run_dir / "checkpoints" / "average-last-2.safetensors"
    assert result.stdout.strip() == f"wrote {averaged}"
    scores = tcli("eval", run_dir, "--checkpoint", "average-last-2", "--json", "--device", "cpu")
    assert json.loads(scores.stdout)["n_sentences"] == SPLIT_SIZES["test"]
    assert "average-last-2 checkpoint (step-00000075.safetensors,step-00000150" in scores.stderr
    last = tcli("translate", run_dir, "--checkpoint", "last", stdin="The dog sleeps.\n")
    assert last.stdout.count("\n") == 1
    too_many = tcli("average", run_dir, "--last", "3", check=False)
    _assert_one_line_error(too_many, "--last 3", "has 2 step checkpoint(s)")


def test_average_out_replaces_an_existing_file_only_when_asked(run_dir, tmp_path):
    target = tmp_path / "mine.safetensors"
    target.write_bytes(b"precious")
    refused = tcli("average", run_dir, "--last", "2", "--out", target, check=False)
    _assert_one_line_error(refused, f"--out {target} already exists", "--overwrite")
    assert target.read_bytes() == b"precious"
    tcli("average", run_dir, "--last", "2", "--out", target, "--overwrite")
    assert target.read_bytes() != b"precious"


def test_translate_checks_its_output_path_before_translating(run_dir, tmp_path):
    a_file = tmp_path / "src.en"
    a_file.write_text("A dog.\n")
    into_a_file = tcli("translate", run_dir, "--output", a_file / "out.de", stdin="A dog.\n",
                       check=False)  # fmt: skip
    _assert_one_line_error(into_a_file, f"{a_file} is a file, not a folder")
    missing = tmp_path / "no" / "such"
    nowhere = tcli("translate", run_dir, "--output", missing / "out.de", stdin="A dog.\n",
                   check=False)  # fmt: skip
    _assert_one_line_error(nowhere, f"{missing} does not exist")
    assert not (tmp_path / "no").exists()  # no folder created that nobody asked for


def test_version_and_usage_lines_read_as_a_person_writes_them():
    from transformer_cli import __version__

    assert tcli("--version").stdout == f"tcli {__version__}\n"
    for command in ("eval", "explain"):
        usage = tcli(command, "--help").stdout.splitlines()[0]
        assert usage == f"Usage: tcli {command} [OPTIONS] [RUN_DIR]"


def test_eval_of_two_empty_files_names_them(tmp_path):
    hyp, ref = tmp_path / "hyp.de", tmp_path / "ref.de"
    hyp.write_text("")
    ref.write_text("")
    result = tcli("eval", "--hyp", hyp, "--ref", ref, check=False)
    _assert_one_line_error(result, f"{hyp} / {ref}: both files are empty")


def test_a_run_without_a_test_set_trains_and_eval_asks_for_src_and_ref(
    config_file, corpus, tmp_path
):
    out = tmp_path / "no-test"
    every = ("--set", "train.max_steps=2", "--set", "train.eval_every=2")
    tcli("train", config_file, "--out", out, "--set", "data.test=null", *every)
    result = tcli("eval", out, "--device", "cpu", check=False)
    _assert_one_line_error(result, f"{out / 'config.yaml'} has no data.test", "--src and --ref")
    tcli("eval", out, "--src", corpus / "test.en", "--ref", corpus / "test.de", "--device", "cpu")


def test_a_vocabulary_too_small_for_the_characters_names_the_key(config_file, tmp_path):
    args = ("train", config_file, "--out", tmp_path / "r", "--set", "tokenizer.vocab_size=10")
    result = tcli(*args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]  # after the log line saying what it trains
    assert error.startswith("tcli: error: tokenizer.vocab_size=10: SentencePiece training failed")
    assert "src/" not in error and "tokenizer.character_coverage" in error


def test_tensorboard_gets_the_same_scalars_as_metrics_jsonl(config_file, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ("train", config_file, "--out", tmp_path / "r", "--set", "train.tensorboard=true")
    every = ("--set", "train.eval_every=2", "--set", "train.log_every=1")
    tcli(*args, *every, "--set", "train.max_steps=4")
    tcli("train", "--resume", tmp_path / "r", "--set", "train.max_steps=6")  # appends to the log
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    records = read_records(tmp_path / "r" / "metrics.jsonl")
    for kind, key in (("train", "loss"), ("valid", "bleu"), ("valid", "loss")):
        logged = [(r["step"], r[key]) for r in records if r["kind"] == kind]
        scalars = [(e.step, e.value) for e in events.Scalars(f"{kind}/{key}")]
        assert len(scalars) == len(logged) > 0
        assert scalars == [(step, pytest.approx(value, rel=1e-6)) for step, value in logged]


def test_missing_tensorboard_package_is_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    log = TrainingLog(tmp_path, max_steps=1, max_minutes=None, tensorboard=True)
    log.close()
    assert log.tensorboard is None
    assert "the tensorboard package is not installed; skipping it" in caplog.text


def _assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcli: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("translate", "runs/x", "--beam", "0"), "'--beam'"),
        (("translate", "runs/x", "--batch-size", "-1"), "'--batch-size'"),
        (("translate", "runs/x", "--no-such-flag"), "--no-such-flag"),
        (("average", "runs/x"), "'--last'"),
        (("evaluate",), "'evaluate'"),
    ],
)
def test_usage_errors_are_one_line_naming_the_flag(args, named):
    _assert_one_line_error(tcli(*args, check=False), named, "--help)")


def test_existing_run_is_not_overwritten_without_asking(run_dir, config_file):
    before = (run_dir / "checkpoints" / "best.safetensors").read_bytes()
    result = tcli("train", config_file, "--out", run_dir, check=False)
    _assert_one_line_error(result, str(run_dir), "--overwrite")
    assert (run_dir / "checkpoints" / "best.safetensors").read_bytes() == before


def test_overwrite_keeps_the_old_run_until_the_new_one_starts(run_dir, config_file, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    before = (copy / "checkpoints" / "best.safetensors").read_bytes()
    args = ("train", config_file, "--out", copy, "--overwrite", "--set")
    failed = tcli(*args, "tokenizer.vocab_size=5", check=False)  # SentencePiece refuses
    assert failed.returncode == 2 and "tcli: error: tokenizer" in failed.stderr
    assert (copy / "checkpoints" / "best.safetensors").read_bytes() == before
    tcli(*args, "train.max_steps=2", "--set", "train.eval_every=2")
    assert read_records(copy / "metrics.jsonl")[-1]["step"] == 2  # the new run
    assert sorted(path.name for path in tmp_path.iterdir()) == ["copy"]  # the old one is gone


def test_out_that_is_a_file_is_an_error(config_file):
    _assert_one_line_error(tcli("train", config_file, "--out", config_file, check=False), "a file")


@pytest.mark.parametrize("split", ["train", "valid"])
def test_empty_data_is_named(config_file, tmp_path, split):
    for lang in ("en", "de"):
        (tmp_path / f"empty.{lang}").write_text("")
    sides = [("--set", f"data.{split}.{s}={tmp_path / ('empty.' + lang)}") for s, lang in
             (("src", "en"), ("tgt", "de"))]  # fmt: skip
    result = tcli("train", config_file, "--out", tmp_path / "r", *sides[0], *sides[1], check=False)
    _assert_one_line_error(result, f"data.{split}:", "is empty")
    assert not (tmp_path / "r").exists()


def test_output_paths_that_are_directories_are_errors(run_dir, tmp_path):
    result = tcli("translate", run_dir, "--output", tmp_path, stdin="A cat.\n", check=False)
    _assert_one_line_error(result, "--output", "is a directory")
    result = tcli("average", run_dir, "--last", "1", "--out", tmp_path, check=False)
    _assert_one_line_error(result, "'--out'", "is a directory")


def test_a_damaged_run_config_is_named(tmp_path):
    (tmp_path / "config.yaml").write_text("data: [\n")
    result = tcli("translate", tmp_path, stdin="A cat.\n", check=False)
    _assert_one_line_error(result, "config.yaml:2: invalid YAML")


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


@pytest.mark.parametrize("args", [["translate", "no/such/run"], ["translate", "--no-such-flag"]])
def test_debug_flag_keeps_the_exit_code_of_user_errors(args):
    plain = tcli(*args, check=False)
    debug = tcli(*args, "--debug", check=False)
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" in debug.stderr and "Traceback" not in plain.stderr


@pytest.mark.parametrize("command", ["train", "translate", "eval"])
def test_every_command_has_help_with_an_example(command):
    result = tcli(command, "--help")
    assert "Example" in result.stdout and f"tcli {command}" in result.stdout
