"""The README's Usage commands run in the order printed, in one folder, and do what the text says
(tiny sizes through extra overrides; everything else as written)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import optuna
import pytest
from conftest import cli

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = {"data.n_samples": "400", "training.max_epochs": "2", "tracking": "none"}


def usage_commands() -> list[list[str]]:
    """The ``bash`` block under ``## Usage``, after the README's first command (``tuning sweep``)."""
    text = README.read_text()
    usage = text[text.index("## Usage") :]
    block = re.search(r"```bash\n(.*?)```", usage, re.S).group(1)
    commands = [["tuning", "sweep"]]
    for line in block.splitlines():
        words = shlex.split(line.split("  #")[0])
        if words[:3] == ["python", "-m", "tuning"]:
            words = ["tuning", *words[3:]]
        commands.append(words)
    return commands


def tiny(args: list[str]) -> list[str]:
    """Shrink a sweep: n_trials / 10 (at least 1; 2 when unset), small data, 2 epochs."""
    keys = {a.split("=", 1)[0] for a in args}
    out = []
    for arg in args:
        key, _, value = arg.partition("=")
        out.append(f"{key}={max(1, int(value) // 10)}" if key == "study.n_trials" else arg)
    out += [f"{k}={v}" for k, v in TINY.items() if k not in keys]
    return out + ([] if "study.n_trials" in keys else ["study.n_trials=2"])


def study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///experiments/{name}/optuna.db")


def finished(name: str) -> int:
    return sum(t.state.name in ("COMPLETE", "PRUNED") for t in study(name).trials)


def test_usage_block_runs_in_order(in_tmp):
    commands = usage_commands()
    assert commands[1][:2] == ["tuning", "sweep"] and len(commands) >= 8
    for words in commands:
        assert words[0] == "tuning", words
        command, args = words[1] if len(words) > 1 else "", words[2:]
        if command == "sweep" and not any(a.startswith("-") for a in args):
            args = tiny(args)
        assert cli([command, *args] if command else ["--help"]) == 0, words
        if command != "sweep" or any(a.startswith("-") for a in args):
            continue
        name = next((a.split("=", 1)[1] for a in args if a.startswith("study.name=")), "plants")
        n_trials = int(next(a.split("=", 1)[1] for a in args if a.startswith("study.n_trials=")))
        assert finished(name) >= n_trials, words
        assert Path(f"experiments/{name}/best.yaml").is_file()
        identity = study(name).user_attrs["identity"]
        if "seed=7" in args:
            assert identity["seed"] == 7
            assert {t.params["activation"] for t in study(name).trials} <= {"relu", "tanh"}
        if "study.metric=val_accuracy" in args:
            assert study(name).direction.name == "MAXIMIZE"
    # Resumes kept the first command's study: same identity, every trial counted once.
    plants = study("plants")
    assert plants.user_attrs["identity"]["seed"] == 42
    assert len(plants.trials) == finished("plants") == 7
