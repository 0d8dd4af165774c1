"""The command line: help, Hydra flags, and one-line errors (exit 2) before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("study.n_trials=0", "error: study.n_trials: 0; must be an integer >= 1"),
        ("training.threads=0", "error: training.threads: 0; must be an integer >= 1"),
        ("sampler=bogus", "error: sampler: 'bogus' is not one of: cmaes, gp, nsga2, qmc, random, tpe"),
        ("pruner=bogus", "error: pruner: 'bogus' is not one of: hyperband, median, none, successive_halving"),
        ("search_space.units.low=0", "error: search_space.units.low: 0: units must be >= 1"),
        ("search_space.dropout.high=1.0", "error: search_space.dropout.high: 1.0: dropout must be in [0, 1)"),
        ("search_space.activation.choices=[]", "error: search_space.activation.choices: []"),
        (
            "search_space.activation=swoosh",
            "error: search_space.activation: 'swoosh': activation must be one of",
        ),
        ("search_space.optimizer=adamz", "error: search_space.optimizer: 'adamz': optimizer must be one of"),
        (
            "search_space.loss=categorical_crossentropy",
            "error: search_space.loss: 'categorical_crossentropy' does not fit a binary target",
        ),
        ("study.metric=val_rmse", "error: study.metric: 'val_rmse' is not computed for a binary task"),
        ("study.direction=up", "error: study.direction: 'up'; allowed: auto, minimize, maximize"),
        (
            "+sampler.bogus=1",
            "error: sampler: tpe: TPESampler.__init__() got an unexpected keyword argument 'bogus'",
        ),
        (
            "search_space.learning_rate.low=-1",
            "error: search_space.learning_rate.low: -1: learning_rate must be > 0",
        ),
        ("nosuchkey=1", "error: nosuchkey:"),
        (
            "search_space.units.step=2",
            "error: search_space.units.step: is not a config group or key of this config; "
            "to add it as a new key: +search_space.units.step=VALUE",
        ),
        (
            "study.metric=val_loss",
            "error: study.metric: val_loss is each trial's own loss function, and the search space tries 2",
        ),
    ],
)
def test_bad_config_is_one_line_exit_2_and_writes_nothing(in_tmp, capsys, override, expected):
    assert cli(["sweep", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected), err
    assert err.count("\n") == 1, err
    assert list(in_tmp.iterdir()) == []


def test_config_errors_do_not_import_tensorflow(in_tmp):
    code = (
        "import sys, json; from tuning.cli import main\n"
        "try: main(['sweep', 'search_space.units.low=64', 'search_space.units.high=8'])\n"
        "except SystemExit as e: rc = e.code\n"
        "print(json.dumps([rc, 'tensorflow' in sys.modules, 'keras' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2, False, False]
    assert "error: search_space.units: low (64) > high (8); low must be <= high" in out.stderr


def test_help_lists_commands_without_tensorflow():
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from tuning.cli import main; main(['--help']); "
         "print('tensorflow' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "sweep" in out.stdout and "report" in out.stdout
    assert out.stdout.strip().endswith("False")


def test_sweep_help_shows_groups_choices_and_common_keys_with_this_commands_values(in_tmp, capsys):
    assert cli(["sweep", "--help"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) < 45, out  # not the composed config: that is --cfg job
    assert "  sampler=      tpe, cmaes, gp, nsga2, qmc, random" in lines
    assert any(line.startswith("  study.n_trials=50 ") for line in lines)
    assert "data.* (plants): data.name, data.task, data.n_samples, data.noise" in out
    # The overrides given apply: another group's keys and values.
    assert cli(["sweep", "data=csv", "data.path=customers.csv", "study.n_trials=7", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  data=         csv, " in out and "data.path, data.target" in out
    assert any(line.startswith("  study.n_trials=7 ") for line in out.splitlines())
    assert any(line.startswith("  study.name=customers ") for line in out.splitlines())
    assert list(in_tmp.iterdir()) == []


def test_help_into_a_closed_pipe_is_no_traceback():
    """`tuning sweep --help | head -1`: the reader leaves early; the writer exits quietly.

    `| true` closes the pipe before Python has even started, so every write hits a closed pipe.
    """
    for args in (["sweep", "--help"], ["train", "--help"], ["--help"]):
        for reader in ("head -1", "true"):
            done = subprocess.run(
                f"{sys.executable} -m tuning {' '.join(args)} | {reader}",
                shell=True, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert reader == "true" or done.stdout.startswith("usage: tuning"), done.stdout
            assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_unknown_command_is_exit_2(capsys):
    assert cli(["swep"]) == 2
    assert "unknown command 'swep'" in capsys.readouterr().err


def test_cfg_job_prints_the_composed_config_and_trains_nothing(in_tmp, capsys):
    assert cli(["sweep", "--cfg", "job", "seed=7", "search_space.activation=tanh"]) == 0
    out = capsys.readouterr().out
    assert "seed: 7" in out and "activation: tanh" in out and "sampler:" in out
    assert not Path("experiments/plants/optuna.db").exists()


def test_python_m_tuning_runs_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "tuning", "--help"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("usage: tuning COMMAND")


def test_wheel_ships_the_configs_and_finds_them_installed(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(tmp_path.glob("tuning-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "tuning/conf/config.yaml" in names and "tuning/conf/sampler/tpe.yaml" in names
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    code = "from tuning.config import conf_dir; print(conf_dir())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, cwd=tmp_path,
    )  # fmt: skip
    assert Path(out.stdout.strip()) == target / "tuning" / "conf"
