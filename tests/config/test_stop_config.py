"""`stop=converged` as config: its defaults are conf/'s, a resume may change it, and what it cannot
run is refused in one line, exit 2, before TensorFlow (no training here)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import yaml
from conftest import cli, settings

from tuning.config import conf_dir, parse
from tuning.config.schema import StopConfig
from tuning.errors import ConfigError
from tuning.study.identity import study_identity


def test_stop_is_off_by_default_and_converged_has_conf_defaults():
    assert parse(settings()).stop == StopConfig()
    assert not StopConfig().converged
    conf = yaml.safe_load((conf_dir() / "stop" / "converged.yaml").read_text())
    assert parse(settings("stop=converged")).stop == StopConfig(**conf)
    assert StopConfig(**conf) == StopConfig(name="converged"), "code defaults == conf/stop/converged.yaml"


def test_a_resume_may_turn_stop_on_off_or_change_it():
    assert study_identity(settings("stop=converged", "stop.patience=3")) == study_identity(settings())


@pytest.mark.parametrize(
    ("override", "key", "text"),
    [
        ("stop.patience=0", "stop.patience", "must be an integer >= 1"),
        ("stop.min_trials=x", "stop.min_trials", "must be an integer >= 1"),
        ("stop.evaluator=median", "stop.evaluator", "allowed: stagnation, regret_bound"),
    ],
)
def test_a_bad_stop_value_is_one_line_naming_its_key(override, key, text):
    with pytest.raises(ConfigError) as caught:
        parse(settings("stop=converged", override))
    assert caught.value.key == key and text in str(caught.value) and "\n" not in str(caught.value)


def test_regret_bound_needs_pytorch(in_tmp, capsys):
    if importlib.util.find_spec("torch") is not None:  # PyTorch here: the option is accepted
        assert (
            parse(settings("stop=converged", "stop.evaluator=regret_bound")).stop.evaluator == "regret_bound"
        )
        return
    assert cli(["sweep", "stop=converged", "stop.evaluator=regret_bound"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: stop.evaluator: 'regret_bound' fits a Gaussian process with Optuna's GP code, which "
        "needs PyTorch (not installed: pip install -e '.[gp]'); allowed without it: stagnation\n"
    )
    assert list(in_tmp.iterdir()) == []


def test_converged_with_two_objectives_is_one_line_exit_2(in_tmp, capsys):
    assert cli(["sweep", "stop=converged", "selection=pareto"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stop: converged judges one objective; selection=pareto has two"), err
    assert err.count("\n") == 1 and list(in_tmp.iterdir()) == []


def test_keras_tuner_refuses_converged_before_tensorflow(in_tmp):
    code = (
        "import sys, json; from tuning.cli import main\n"
        "try: main(['sweep', 'engine=keras_tuner', 'stop=converged'])\n"
        "except SystemExit as e: rc = e.code\n"
        "print(json.dumps([rc, 'tensorflow' in sys.modules, 'keras_tuner' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=in_tmp)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [2, False, False]
    assert out.stderr == (
        "error: stop: converged asks Optuna's terminator about an Optuna study; engine=keras_tuner "
        "keeps none: use stop=none, or engine=optuna\n"
    )
    assert list(in_tmp.iterdir()) == []
