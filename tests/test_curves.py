"""`tcli plot`: training curves drawn from metrics.jsonl, also of runs still training or resumed."""

import json
import re
import sys
from pathlib import Path

import pytest
from conftest import tcli
from matplotlib.image import imread

from transformer_cli.curves import parse_run, plot_training_curves, training_curves
from transformer_cli.errors import DataError, RunError, TcliError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PANEL_TITLES = ("training loss", "validation loss", "BLEU", "learning rate", "tokens per second")


def train_record(step: int, loss: float = 5.0) -> dict:
    return {"kind": "train", "step": step, "epoch": 0, "lr": step * 1e-5, "grad_norm": 1.0,
            "loss": loss, "tokens_per_s": 12000, "elapsed_s": step * 0.6}  # fmt: skip


def valid_record(step: int) -> dict:
    return {"kind": "valid", "step": step, "epoch": 0, "loss": 3.0, "ppl": 20.09, "bleu": 10.0,
            "chrf": 30.0, "elapsed_s": step * 0.6 + 1}  # fmt: skip


def make_run(directory: Path, records: list[dict], tail: str = "") -> Path:
    """A run directory whose metrics.jsonl holds `records`, then `tail` (a line being written)."""
    directory.mkdir(parents=True)
    lines = "".join(json.dumps(record) + "\n" for record in records)
    (directory / "metrics.jsonl").write_text(lines + tail, encoding="utf-8")
    return directory


def full_run(directory: Path) -> Path:
    return make_run(directory, [train_record(50), valid_record(75), train_record(100),
                                train_record(150), valid_record(150)])  # fmt: skip


def lines_per_panel(figure) -> list[int]:
    return [len(axis.get_lines()) for axis in figure.axes]


def test_figure_has_one_panel_per_curve_and_perplexity_on_a_twin_axis(tmp_path):
    figure = training_curves([(full_run(tmp_path / "run"), "run")])
    titles = [axis.get_title() for axis in figure.axes]  # a twin axis is no panel of its own
    assert len(titles) == len(PANEL_TITLES)
    for title, expected in zip(titles, PANEL_TITLES, strict=True):
        assert expected in title
    assert [child.get_ylabel() for child in figure.axes[1].child_axes] == ["perplexity"]
    assert lines_per_panel(figure) == [1, 1, 2, 1, 1]  # BLEU and chrF share a panel
    steps, losses = figure.axes[0].get_lines()[0].get_data()
    assert list(steps) == [50, 100, 150] and list(losses) == [5.0, 5.0, 5.0]


def test_plot_writes_a_png_of_sensible_size(tmp_path):
    path = plot_training_curves([(full_run(tmp_path / "run"), "run")], tmp_path / "out.png")
    assert path == tmp_path / "out.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(path).shape[:2]
    assert 800 <= width <= 2000 and 400 <= height <= 1200
    assert path.stat().st_size < 150_000


def test_one_run_is_plotted_into_its_own_directory_by_default(tmp_path):
    run = full_run(tmp_path / "run")
    assert plot_training_curves([(run, "run")]) == run / "curves.png"
    assert (run / "curves.png").read_bytes()[:8] == PNG_SIGNATURE


def test_several_runs_share_each_panel_with_one_labelled_colour_each(tmp_path):
    runs = [(full_run(tmp_path / "a"), "first"), (full_run(tmp_path / "b"), "second")]
    figure = training_curves(runs)
    assert lines_per_panel(figure) == [2, 2, 4, 2, 2]
    first, second = figure.axes[0].get_lines()
    assert first.get_color() != second.get_color()
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["first", "second"]


def test_several_runs_need_an_output_file(tmp_path):
    runs = [(full_run(tmp_path / "a"), "a"), (full_run(tmp_path / "b"), "b")]
    with pytest.raises(TcliError, match="--out"):
        plot_training_curves(runs)


def test_minutes_put_training_time_on_the_x_axis(tmp_path):
    figure = training_curves([(full_run(tmp_path / "run"), "run")], minutes=True)
    minutes, _ = figure.axes[0].get_lines()[0].get_data()
    assert list(minutes) == pytest.approx([0.5, 1.0, 1.5])  # elapsed_s 30, 60, 90
    assert figure.axes[0].get_xlabel() == "minutes of training"


def test_a_run_still_being_written_plots_its_complete_records(tmp_path):
    run = make_run(tmp_path / "run", [train_record(50), train_record(100)],
                   tail='{"kind": "train", "step": 15')  # fmt: skip
    figure = training_curves([(run, "run")])
    assert list(figure.axes[0].get_lines()[0].get_data()[0]) == [50, 100]
    # no validation yet: those panels say so instead of drawing an empty scale
    assert lines_per_panel(figure) == [1, 0, 0, 1, 1]
    assert "no validation yet" in [text.get_text() for text in figure.axes[1].texts]


def test_a_resumed_run_plots_each_step_once_in_order_with_the_later_record(tmp_path):
    # a crash after step 150's record, resumed from the checkpoint of step 100; out of order too
    records = [train_record(100), train_record(150, loss=4.0), train_record(50),
               train_record(150, loss=3.0), valid_record(200), train_record(200)]  # fmt: skip
    figure = training_curves([(make_run(tmp_path / "run", records), "run")])
    steps, losses = figure.axes[0].get_lines()[0].get_data()
    assert list(steps) == [50, 100, 150, 200]
    assert losses[2] == 3.0


def test_run_labels_come_after_an_equals_sign_or_from_the_directory(tmp_path):
    assert parse_run("runs/tuned=the tuned run") == (Path("runs/tuned"), "the tuned run")
    assert parse_run("runs/tuned") == (Path("runs/tuned"), "tuned")
    odd = full_run(tmp_path / "lr=0.1")
    assert parse_run(str(odd)) == (odd, "lr=0.1")  # an existing directory is never split


def test_a_metrics_file_without_records_is_an_error_naming_it(tmp_path):
    run = make_run(tmp_path / "run", [])
    named = re.escape(f"{run / 'metrics.jsonl'} has no training or validation records")
    with pytest.raises(DataError, match=named):
        training_curves([(run, "run")])


def test_a_missing_run_directory_is_an_error_naming_it(tmp_path):
    with pytest.raises(RunError, match=re.escape(f"no run directory {tmp_path / 'nowhere'}")):
        training_curves([(tmp_path / "nowhere", "nowhere")])


def test_missing_matplotlib_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    run = full_run(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if absent
    with pytest.raises(TcliError, match=r"transformer-cli\[plot\]") as raised:
        plot_training_curves([(run, "run")])
    assert "\n" not in str(raised.value)
    assert not (run / "curves.png").exists()


def test_plot_command_draws_a_trained_run(run_dir, tmp_path):
    out = tmp_path / "curves.png"
    result = tcli("plot", f"{run_dir}=tiny", "--minutes", "--out", out)
    assert result.stdout == f"wrote {out}\n"
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_plot_command_names_a_directory_that_is_not_a_run(tmp_path):
    result = tcli("plot", tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"tcli: error: {tmp_path} is not a tcli run directory (no metrics.jsonl)"]
