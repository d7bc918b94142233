"""Learning-rate schedules (schedule.py): warmup, the curves after it, the budget schedule, noam."""

import pytest

from transformer_cli.config import TrainConfig
from transformer_cli.schedule import learning_rate


def _train_config(**values: object) -> TrainConfig:
    base = dict(max_steps=10_000, max_minutes=None, batch_tokens=1, lr=1e-3, warmup_steps=100,
                label_smoothing=0.0, seed=0, eval_every=1)  # fmt: skip
    return TrainConfig(**{**base, **values})


@pytest.mark.parametrize("schedule", ["inverse_sqrt", "cosine", "budget", "constant"])
def test_schedules_warm_up_linearly_to_the_peak(schedule):
    train_config = _train_config(lr_schedule=schedule)
    assert learning_rate(50, train_config, 512) == pytest.approx(0.5e-3)
    assert learning_rate(100, train_config, 512) == pytest.approx(1e-3)


def test_schedule_shapes_after_warmup():
    assert learning_rate(400, _train_config(), 512) == pytest.approx(0.5e-3)  # sqrt(100/400)
    cosine = _train_config(lr_schedule="cosine", max_steps=1100)
    assert learning_rate(600, cosine, 512) == pytest.approx(0.5e-3)  # half way
    assert learning_rate(1100, cosine, 512) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(5000, _train_config(lr_schedule="constant"), 512) == 1e-3


def test_budget_schedule_decays_linearly_to_zero_when_the_budget_ends():
    budget = _train_config(lr_schedule="budget", warmup_steps=10)
    assert learning_rate(5, budget, 512, progress=0.0) == pytest.approx(0.5e-3)  # warming up
    assert learning_rate(600, budget, 512, progress=0.25) == pytest.approx(0.75e-3)
    assert learning_rate(600, budget, 512, progress=0.5) == pytest.approx(0.5e-3)
    assert learning_rate(900, budget, 512, progress=1.0) == 0.0
    assert learning_rate(901, budget, 512, progress=1.2) == 0.0  # never negative


def test_noam_is_the_paper_formula():
    noam = _train_config(lr_schedule="noam", lr=1.0, warmup_steps=4000)
    for step in (1, 1000, 4000, 20000):
        expected = 512**-0.5 * min(step**-0.5, step * 4000**-1.5)
        assert learning_rate(step, noam, 512) == pytest.approx(expected)
    assert learning_rate(4000, noam, 512) == pytest.approx(6.988e-4, rel=1e-3)
