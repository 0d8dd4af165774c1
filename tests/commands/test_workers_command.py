"""`tuning sweep workers=N` without training: bad values, the engine check, the shared count."""

from __future__ import annotations

import io

import pytest
from conftest import cli

from tuning.commands.workers import Display, check_workers, exit_code
from tuning.config.schema import Component
from tuning.errors import ConfigError


def test_bad_worker_count_is_one_line_exit_2_and_writes_nothing(in_tmp, capsys):
    assert cli(["sweep", "workers=0"]) == 2
    assert capsys.readouterr().err == "error: workers: 0; must be an integer >= 1\n"
    assert list(in_tmp.iterdir()) == []


def test_workers_need_an_engine_whose_study_is_shared():
    check_workers(4, Component("optuna"))
    check_workers(1, Component("keras_tuner"))
    with pytest.raises(ConfigError, match=r"^workers: 2 with engine=keras_tuner: .* needs engine=optuna$"):
        check_workers(2, Component("keras_tuner"))


def test_one_count_for_the_study_whichever_worker_prints():
    out = io.StringIO()
    display = Display(out)
    display.line(0, "[01:00:00] study 'plants' in sqlite:///x.db: 2/9 trials finished\n")
    display.line(1, "[01:00:00] study 'plants' in sqlite:///x.db: 2/9 trials finished\n")
    # Both workers read 4 from the study when their trials ended together.
    display.line(1, "[01:00:01] [4/9] trial 3 COMPLETE val_log_loss=0.5 | best 0.5 (trial 3)\n")
    display.line(0, "[01:00:01] [4/9] trial 2 PRUNED val_log_loss=0.6 | best 0.5 (trial 3)\n")
    display.line(0, "[01:00:02] [4/9, not counted] trial 5 FAIL (NaN) val_log_loss=- | best\n")
    lines = out.getvalue().splitlines()
    assert lines[2] == "w1| [01:00:01] [3/9] trial 3 COMPLETE val_log_loss=0.5 | best 0.5 (trial 3)"
    assert lines[3] == "w0| [01:00:01] [4/9] trial 2 PRUNED val_log_loss=0.6 | best 0.5 (trial 3)"
    assert lines[4] == "w0| [01:00:02] [4/9, not counted] trial 5 FAIL (NaN) val_log_loss=- | best"


@pytest.mark.parametrize(
    ("codes", "expected"),
    [([0, 0], 0), ([3, 0], 0), ([0, 3], 3), ([0, 2], 2), ([2, 143], 143), ([130, 1], 1), ([0, -9], 1)],
)
def test_the_launcher_exit_code(codes, expected):
    assert exit_code(codes) == expected
