"""Training you can trust: exact resume, faults, accumulation, the budget schedule end to end."""

import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import tcli, tiny_config, weights

from transformer_cli import load_run
from transformer_cli import trainer as trainer_module
from transformer_cli.checkpoint import (
    latest_step,
    load_training_state,
    step_checkpoints,
)
from transformer_cli.config import ParallelFiles
from transformer_cli.data.cache import EncodedCorpus
from transformer_cli.device import resolve_precision
from transformer_cli.errors import ConfigError, Diverged, FileWriteError, RunError
from transformer_cli.evaluate import Validator
from transformer_cli.loss import TeacherForcedLoss
from transformer_cli.records import TrainingLog, read_records
from transformer_cli.train import resume, train


def _train_losses(run_dir: Path) -> dict[int, float]:
    return {
        r["step"]: r["loss"]
        for r in read_records(run_dir / "metrics.jsonl")
        if r["kind"] == "train"
    }


@pytest.mark.parametrize("accum_steps", [1, 2])
def test_resumed_training_equals_uninterrupted_training(corpus, tmp_path, accum_steps):
    # Dropout on, so that the resumed run must draw the same masks; the stop falls mid-epoch.
    settings = dict(max_steps=14, eval_every=5, log_every=1, accum_steps=accum_steps)
    config = tiny_config(corpus, **settings).model_copy(deep=True)
    config.model.dropout = 0.1
    straight = train(config, tmp_path / "straight", device="cpu")

    halfway = config.model_copy(deep=True)
    halfway.train.max_steps = 7
    train(halfway, tmp_path / "resumed", device="cpu")
    resumed = resume(tmp_path / "resumed", ["train.max_steps=14"], device="cpu")

    assert straight.steps == resumed.steps == 14
    assert _train_losses(tmp_path / "resumed") == _train_losses(tmp_path / "straight")
    assert len(_train_losses(tmp_path / "straight")) == 14
    final = "checkpoints/step-00000014.safetensors"
    expected, got = weights(tmp_path / "straight" / final), weights(tmp_path / "resumed" / final)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name  # bit for bit
    assert (resumed.best_value, resumed.best_step) == (straight.best_value, straight.best_step)


def test_training_state_holds_what_resuming_needs(corpus, tmp_path):
    train(tiny_config(corpus, max_steps=3, eval_every=3), tmp_path / "run", device="cpu")
    state = load_training_state(tmp_path / "run" / "checkpoints", 3)
    assert {"step", "epoch", "batch_index", "world_size", "optimizer", "scaler"} <= state.keys()
    assert state["step"] == 3 and state["batch_index"] == 3


def test_a_failed_checkpoint_write_is_one_error_naming_the_file(corpus, tmp_path, monkeypatch):
    """A full disk at the second checkpoint, simulated in safetensors' writer."""
    save_model = safetensors.torch.save_model

    def disk_full_at_step_4(model, filename, metadata=None):
        if "step-00000004" in filename:
            raise safetensors.SafetensorError("I/O error: No space left on device (os error 28)")
        save_model(model, filename, metadata)

    monkeypatch.setattr(safetensors.torch, "save_model", disk_full_at_step_4)
    run = tmp_path / "run"
    config = tiny_config(corpus, max_steps=6, eval_every=2)
    with pytest.raises(FileWriteError) as caught:
        train(config, run, device="cpu")
    assert str(caught.value).startswith(
        f"cannot write {run}/checkpoints/step-00000004.safetensors: I/O error: No space left "
        "on device (os error 28) (at step 4); the last checkpoint (step 2) is intact. Make room, "
        f"then resume with: tcli train --resume {run}"
    )
    assert latest_step(run / "checkpoints") == 2
    assert not list((run / "checkpoints").glob("*.tmp")) and not list(run.glob("checkpoints/.*"))
    monkeypatch.setattr(safetensors.torch, "save_model", save_model)
    assert resume(run, device="cpu").steps == 6  # and the run goes on from step 2


def _can_mount_tmpfs(path: Path) -> bool:
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                             capture_output=True).returncode == 0  # fmt: skip
    if mounted:
        subprocess.run(["umount", str(path)], check=True)
    return mounted


def test_a_really_full_disk_keeps_the_last_checkpoint_whole(short_run, tmp_path):
    """A run resumed on a tmpfs with too little room left for its next checkpoint."""
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("mounting a tmpfs needs root")
    used = sum(path.stat().st_size for path in short_run.rglob("*") if path.is_file())
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={used + 200_000}", "tmpfs", str(disk)],
                   check=True)  # fmt: skip
    try:
        run = disk / "run"
        shutil.copytree(short_run, run)
        before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
        result = tcli("train", "--resume", run, "--set", "train.max_steps=8", "--device", "cpu",
                      check=False)  # fmt: skip
        assert result.returncode == 2 and "Traceback" not in result.stderr
        error = result.stderr.strip().splitlines()[-1]
        assert re.fullmatch(
            rf"tcli: error: cannot write {run}/\S+: .*No space left on device.* \(at step \d\); "
            rf"the last checkpoint \(step 4\) is intact\. Make room, then resume with: .*",
            error,
        ), error
        assert latest_step(run / "checkpoints") == 4
        for name, content in before.items():
            if name != "latest.json":
                assert (run / "checkpoints" / name).read_bytes() == content, name
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_keep_last_keeps_the_newest_step_checkpoints_and_best(corpus, tmp_path):
    train(
        tiny_config(corpus, max_steps=12, eval_every=2, keep_last=2), tmp_path / "run", device="cpu"
    )
    directory = tmp_path / "run" / "checkpoints"
    assert step_checkpoints(directory) == [10, 12]
    assert sorted(p.name for p in directory.glob("*.state.pt")) == [
        "step-00000010.state.pt",
        "step-00000012.state.pt",
    ]
    assert (directory / "best.safetensors").is_file()


def test_early_stopping_after_patience_validations_without_improvement(corpus, tmp_path):
    # A learning rate this small cannot move the validation BLEU above its first value.
    config = tiny_config(
        corpus, max_steps=100, eval_every=2, early_stopping_patience=2, lr=1e-9,
        lr_schedule="constant", warmup_steps=0,
    )  # fmt: skip
    result = train(config, tmp_path / "run", device="cpu")
    assert (result.stop_reason, result.steps, result.best_step) == ("early_stopping", 6, 2)
    assert latest_step(tmp_path / "run" / "checkpoints") == 6
    # Stopped at step 3 (validated there too, off the schedule) and resumed: the same stop.
    first = config.model_copy(deep=True)
    first.train.max_steps = 3
    train(first, tmp_path / "resumed", device="cpu")
    result = resume(tmp_path / "resumed", ["train.max_steps=100"], device="cpu")
    assert (result.stop_reason, result.steps, result.best_step) == ("early_stopping", 6, 2)


def test_an_extra_validation_at_a_stop_changes_neither_best_nor_patience(
    corpus, tmp_path, monkeypatch
):
    def scripted(bleus: list[float]) -> None:  # the validation BLEU of each call, in order
        scores = iter(bleus)
        result = lambda _: {"loss": 1.0, "ppl": 2.718, "bleu": next(scores), "chrf": 0.0}  # noqa: E731
        monkeypatch.setattr(Validator, "run", result)

    config = tiny_config(corpus, max_steps=40, eval_every=4, early_stopping_patience=2)
    scripted([10, 20, 15, 12])  # steps 4, 8, 12, 16: best at 8, then two without a better one
    straight = train(config, tmp_path / "straight", device="cpu")
    assert (straight.stop_reason, straight.steps, straight.best_step) == ("early_stopping", 16, 8)

    # Stopped at step 6, whose extra validation scores better than anything, then resumed.
    first = config.model_copy(deep=True)
    first.train.max_steps = 6
    scripted([10, 50, 20, 15, 12])  # steps 4, 6 (the stop), 8, 12, 16
    train(first, tmp_path / "resumed", device="cpu")
    resumed = resume(tmp_path / "resumed", ["train.max_steps=40"], device="cpu")
    assert (resumed.stop_reason, resumed.steps, resumed.best_step, resumed.best_value) == (
        "early_stopping", 16, 8, 20,
    )  # fmt: skip
    for run in ("straight", "resumed"):
        assert load_run(tmp_path / run, device="cpu").checkpoint_metadata["step"] == "8"


def test_a_stop_before_any_scheduled_validation_still_leaves_a_best_checkpoint(corpus, tmp_path):
    result = train(tiny_config(corpus, max_steps=3, eval_every=10), tmp_path / "r", device="cpu")
    assert result.best_step == 3
    assert load_run(tmp_path / "r", device="cpu").checkpoint_metadata["step"] == "3"


def test_best_checkpoint_by_loss(corpus, tmp_path):
    result = train(
        tiny_config(corpus, max_steps=40, eval_every=20, best_metric="loss"),
        tmp_path / "r",
        device="cpu",
    )
    valid = [r for r in read_records(tmp_path / "r" / "metrics.jsonl") if r["kind"] == "valid"]
    assert result.best_value == min(r["loss"] for r in valid)
    metadata = load_run(tmp_path / "r", device="cpu").checkpoint_metadata
    assert float(metadata["valid_loss"]) == result.best_value


def _poison_steps(monkeypatch, bad_steps: set[int], weights_too: bool = False) -> None:
    """Make the training loss NaN at the given steps (one batch per step); with `weights_too`,
    the first of them also leaves NaN in the weights (a finite-looking update gone wrong)."""
    forward, calls = TeacherForcedLoss.forward, []

    def poisoned(self, batch, compute_dtype=None):
        calls.append(None)
        loss = forward(self, batch, compute_dtype)
        if len(calls) in bad_steps:
            if weights_too and len(calls) == min(bad_steps):
                with torch.no_grad():
                    next(self.model.parameters()).fill_(math.nan)
            return loss * math.nan
        return loss

    monkeypatch.setattr(TeacherForcedLoss, "forward", poisoned)


def test_a_non_finite_step_is_skipped_and_counted(corpus, tmp_path, monkeypatch, caplog):
    _poison_steps(monkeypatch, {3, 4})
    config = tiny_config(corpus, max_steps=6, eval_every=2, log_every=2, max_bad_steps=3)
    train(config, tmp_path / "run", device="cpu")
    train_records = [r for r in read_records(tmp_path / "run" / "metrics.jsonl")
                     if r["kind"] == "train"]  # fmt: skip
    assert [r.get("skipped_steps", 0) for r in train_records] == [0, 2, 0]
    assert train_records[1]["loss"] is None  # no loss to average: both steps were skipped
    assert "step 3: the loss is nan; skipped it, no update (1 in a row" in caplog.text
    checkpoints = tmp_path / "run" / "checkpoints"
    before, after = (
        weights(checkpoints / "step-00000002.safetensors"),
        weights(checkpoints / "step-00000004.safetensors"),
    )
    assert all(torch.equal(before[name], after[name]) for name in before)  # no update at all
    assert all(torch.isfinite(w).all() for w in weights(checkpoints / "best.safetensors").values())


def test_max_bad_steps_in_a_row_stop_training_naming_the_steps_and_cause(
    corpus, tmp_path, monkeypatch
):
    _poison_steps(monkeypatch, set(range(3, 100)))
    config = tiny_config(corpus, max_steps=20, eval_every=2, max_bad_steps=3)
    with pytest.raises(Diverged, match=r"steps 3 to 5 all had a non-finite loss.*"
                       r"train\.max_bad_steps=3.*learning rate too high.*step 4\)"):  # fmt: skip
        train(config, tmp_path / "run", device="cpu")
    assert latest_step(tmp_path / "run" / "checkpoints") == 4  # step 4 still had step 2's weights


def test_non_finite_weights_are_never_saved(corpus, tmp_path, monkeypatch):
    _poison_steps(monkeypatch, {3}, weights_too=True)
    config = tiny_config(corpus, max_steps=20, eval_every=2, max_bad_steps=3)
    with pytest.raises(Diverged, match=r"the weights are not finite after step 4; not saving"):
        train(config, tmp_path / "run", device="cpu")
    checkpoints = tmp_path / "run" / "checkpoints"
    assert latest_step(checkpoints) == 2
    for path in checkpoints.glob("*.safetensors"):
        assert all(torch.isfinite(w).all() for w in weights(path).values()), path


def test_diverging_training_is_one_line_with_exit_code_1(config_file, tmp_path):
    """A real divergence, not an injected one: a learning rate of 1e30."""
    overrides = ("--set", "train.lr=1e30", "--set", "train.warmup_steps=0")
    out = tmp_path / "run"
    result = tcli("train", config_file, "--out", out, "--device", "cpu", *overrides, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("tcli: error: training diverged") == 1
    assert "train again with a lower train.lr and --overwrite" in result.stderr


def test_max_minutes_stops_within_a_step_and_saves(corpus, tmp_path):
    config = tiny_config(corpus, max_steps=None, max_minutes=0.04, eval_every=10_000)
    result = train(config, tmp_path / "run", device="cpu")
    assert result.stop_reason == "max_minutes"
    assert result.minutes * 60 < 0.04 * 60 + 1.0  # one tiny step plus a final validation
    assert latest_step(tmp_path / "run" / "checkpoints") == result.steps


def test_bf16_autocast_trains_on_cpu(corpus, tmp_path):
    result = train(
        tiny_config(corpus, max_steps=4, eval_every=4, precision="bf16"),
        tmp_path / "r",
        device="cpu",
    )
    losses = _train_losses(tmp_path / "r")
    assert result.steps == 4 and all(math.isfinite(loss) for loss in losses.values())


def test_fp16_without_cuda_is_a_config_error(corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.precision: fp16 training needs a CUDA device"):
        train(tiny_config(corpus, precision="fp16"), tmp_path / "r", device="cpu")
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def finished_short_run(corpus, tmp_path_factory) -> Path:
    """A 4-step run, trained once for the module."""
    out = tmp_path_factory.mktemp("short") / "run"
    train(tiny_config(corpus, max_steps=4, eval_every=2), out, device="cpu")
    return out


@pytest.fixture
def short_run(finished_short_run, tmp_path) -> Path:
    """A copy of the finished 4-step run, for a test to resume, damage or delete from."""
    return shutil.copytree(finished_short_run, tmp_path / "run")


def test_resume_refuses_to_change_the_model(short_run):
    with pytest.raises(
        ConfigError, match=r"--set model\.d_model: cannot change model when resuming"
    ):
        resume(short_run, ["model.d_model=128", "train.max_steps=8"], device="cpu")


def test_resume_past_max_steps_asks_for_more(short_run):
    with pytest.raises(RunError, match=r"already reached train\.max_steps=4; continue with --set"):
        resume(short_run, device="cpu")


def test_resume_saves_the_changed_config(short_run):
    resume(short_run, ["train.max_steps=6", "train.eval_every=3"], device="cpu")
    assert "max_steps: 6" in (short_run / "config.yaml").read_text()
    assert latest_step(short_run / "checkpoints") == 6


@pytest.mark.parametrize(
    ("item", "named"),
    [
        ("train.batch_tokens=700", "train.batch_tokens"),
        ("train.seed=9", "train.seed"),
        ("data.max_ratio=2.5", "data.max_ratio"),
        ("data.max_len=50", "data.max_len"),
    ],
)
def test_resume_refuses_changes_that_move_the_data_position(short_run, item, named):
    with pytest.raises(ConfigError, match=rf"--set {named}: cannot change {named} when resuming "
                       r"\(the saved data position"):  # fmt: skip
        resume(short_run, [item, "train.max_steps=8"], device="cpu")


def test_resume_trains_with_changed_adam_betas(short_run):
    resume(short_run, ["train.adam_betas=[0.8, 0.9]", "train.max_steps=6"], device="cpu")
    state = load_training_state(short_run / "checkpoints", 6)
    assert [group["betas"] for group in state["optimizer"]["param_groups"]] == [(0.8, 0.9)]


def test_resume_with_other_accum_steps_goes_on_with_the_next_batch(corpus, tmp_path, monkeypatch):
    """Changing accum_steps regroups the batches into steps; none is skipped or taken twice."""
    taken: list[tuple[int, int]] = []  # (epoch, position) of every batch, in training order
    seed_of = trainer_module.dropout_seed

    def recording_seed(seed: int, epoch: int, position: int) -> int:
        taken.append((epoch, position))
        return seed_of(seed, epoch, position)

    monkeypatch.setattr(trainer_module, "dropout_seed", recording_seed)
    train(tiny_config(corpus, max_steps=8, eval_every=8), tmp_path / "straight", device="cpu")
    straight, taken[:] = list(taken), []
    train(tiny_config(corpus, max_steps=2, eval_every=2), tmp_path / "run", device="cpu")
    resume(tmp_path / "run", ["train.accum_steps=2", "train.max_steps=5"], device="cpu")
    assert taken == straight  # 2 steps of 1 batch, then 3 of 2: the same 8 batches


def test_resume_without_a_checkpoint_is_an_error(short_run):
    for path in (short_run / "checkpoints").iterdir():
        path.unlink()
    with pytest.raises(RunError, match="no checkpoint to resume from"):
        resume(short_run, ["train.max_steps=8"], device="cpu")


def _learning_rates(run_dir: Path) -> dict[int, float]:
    records = read_records(run_dir / "metrics.jsonl")
    return {r["step"]: r["lr"] for r in records if r["kind"] == "train"}


def test_budget_schedule_reaches_zero_on_the_last_step_of_a_step_budget(corpus, tmp_path):
    config = tiny_config(corpus, max_steps=8, eval_every=8, log_every=1, lr_schedule="budget",
                         warmup_steps=2, lr=0.004)  # fmt: skip
    train(config, tmp_path / "run", device="cpu")
    rates = _learning_rates(tmp_path / "run")
    assert rates[1] == pytest.approx(0.004 * 0.5 * (1 - 1 / 8))  # warmup ramp x decay
    assert rates[4] == pytest.approx(0.004 * (1 - 4 / 8))
    assert rates[8] == 0.0


def test_budget_schedule_reaches_zero_on_the_last_step_of_a_time_budget(corpus, tmp_path):
    config = tiny_config(corpus, max_steps=None, max_minutes=0.06, eval_every=10_000,
                         log_every=1, lr_schedule="budget", warmup_steps=2, lr=0.004)  # fmt: skip
    result = train(config, tmp_path / "run", device="cpu")
    assert result.stop_reason == "max_minutes"
    rates = list(_learning_rates(tmp_path / "run").values())
    assert len(rates) > 10
    assert rates[2:] == sorted(rates[2:], reverse=True)  # decaying with the clock
    assert rates[-1] < 0.05 * max(rates)  # within a step or two of the end: at most 2-3%


def test_budget_run_resumed_from_a_mid_run_checkpoint_continues_the_same_curve(corpus, tmp_path):
    config = tiny_config(corpus, max_steps=14, eval_every=5, log_every=1, lr_schedule="budget",
                         warmup_steps=3).model_copy(deep=True)  # fmt: skip
    config.model.dropout = 0.1
    train(config, tmp_path / "straight", device="cpu")
    shutil.copytree(tmp_path / "straight", tmp_path / "crashed")
    checkpoints = tmp_path / "crashed" / "checkpoints"
    for step in (10, 14):  # as if the run had died after step 5's checkpoint
        for suffix in (".safetensors", ".state.pt"):
            (checkpoints / f"step-{step:08d}{suffix}").unlink()
    (checkpoints / "latest.json").write_text('{"step": 5}\n')
    resume(tmp_path / "crashed", device="cpu")
    assert _learning_rates(tmp_path / "crashed") == _learning_rates(tmp_path / "straight")
    assert _train_losses(tmp_path / "crashed") == _train_losses(tmp_path / "straight")
    final = "checkpoints/step-00000014.safetensors"
    expected, got = weights(tmp_path / "straight" / final), weights(tmp_path / "crashed" / final)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name  # bit for bit


def test_metrics_resume_drops_records_of_steps_done_twice(short_run):
    # Pretend a crash after step 5 was logged but before its checkpoint: those lines are redone.
    with (short_run / "metrics.jsonl").open("a") as file:
        file.write(json.dumps({"kind": "train", "step": 5, "loss": 99.0}) + "\n")
        file.write('{"kind": "train", "st')  # and a line the crash cut short
    resume(short_run, ["train.max_steps=6"], device="cpu")
    records = read_records(short_run / "metrics.jsonl")
    assert 99.0 not in [r.get("loss") for r in records]
    assert [r["step"] for r in records if r["kind"] == "train"] == [4, 6]  # log_every=50: at stops


@pytest.mark.parametrize("damage", [b"", b"partial", b"PK\x03\x04 torn zip"])
def test_a_damaged_training_state_is_a_one_line_error(short_run, damage):
    (short_run / "checkpoints" / "step-00000004.state.pt").write_bytes(damage)
    with pytest.raises(RunError, match=r"cannot load training state .*step-00000004\.state\.pt"):
        resume(short_run, ["train.max_steps=6"], device="cpu")


@pytest.mark.parametrize("state", [{"a": 1}, [1, 2], {"step": 4}])
def test_a_training_state_of_another_shape_is_a_one_line_error(short_run, state):
    torch.save(state, short_run / "checkpoints" / "step-00000004.state.pt")
    with pytest.raises(RunError, match=r"step-00000004\.state\.pt is not a tcli training state "
                       r"\(it lacks .*epoch"):  # fmt: skip
        resume(short_run, ["train.max_steps=6"], device="cpu")


def test_resuming_reuses_the_encoded_corpus(short_run, monkeypatch):
    cache = short_run / "cache"
    before = {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}

    def encode_again(*args, **kwargs):
        raise AssertionError("the corpus was encoded again")

    monkeypatch.setattr(EncodedCorpus, "build", encode_again)
    resume(short_run, ["train.max_steps=6"], device="cpu")
    assert {path.name: path.stat().st_mtime_ns for path in cache.iterdir()} == before
    assert "using its encoding cached" in (short_run / "train.log").read_text()


def test_separate_vocabularies_train_and_translate(corpus, tmp_path):
    config = tiny_config(corpus, max_steps=4, eval_every=4).model_copy(deep=True)
    config.tokenizer.joint = False
    config.tokenizer.vocab_size = 200
    train(config, tmp_path / "run", device="cpu")
    names = {path.name for path in (tmp_path / "run").iterdir()}
    assert {
        "tokenizer.src.model",
        "tokenizer.tgt.model",
    } <= names and "tokenizer.model" not in names
    run = load_run(tmp_path / "run", device="cpu")
    assert run.tokenizers.source is not run.tokenizers.target
    assert run.model.src_embed.num_embeddings == run.tokenizers.source.vocab_size
    assert run.model.output_proj.out_features == run.tokenizers.target.vocab_size
    assert len(run.translate(["The dog sleeps.", "A cat."])) == 2


def test_tsv_training_data_and_an_existing_tokenizer_model(corpus, tmp_path, short_run):
    pairs = zip(
        (corpus / "train.en").read_text().splitlines(),
        (corpus / "train.de").read_text().splitlines(),
        strict=True,
    )
    (tmp_path / "train.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs))
    config = tiny_config(corpus, max_steps=2, eval_every=2).model_copy(deep=True)
    config.data.train = ParallelFiles(tsv=str(tmp_path / "train.tsv"))
    config.tokenizer.model = str(short_run / "tokenizer.model")
    train(config, tmp_path / "tsv-run", device="cpu")
    copied = (tmp_path / "tsv-run" / "tokenizer.model").read_bytes()
    assert copied == (short_run / "tokenizer.model").read_bytes()
    log = (tmp_path / "tsv-run" / "train.log").read_text()
    assert "training pairs: 600 kept of 600" in log and "training SentencePiece" not in log


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_bf16_exactly_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"  # an explicit choice stays
    assert resolve_precision("bf16", cpu) == "bf16"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:  # tqdm draws its bar only on a terminal
        return True


def test_the_progress_bar_shows_loss_rate_speed_and_eta_from_the_first_step(tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    records = TrainingLog(tmp_path, max_steps=100, max_minutes=None)
    records.step(1, 0, loss=2.5, tokens=1000, lr=1e-4, grad_norm=1.0)  # log_every is far away
    records.bar.refresh()
    records.close()
    assert re.search(r"loss=2\.500 lr=1\.00e-04 tok/s=[\d,]+ eta=\d+:\d\d", terminal.getvalue())
