"""A study's identity: stored when it is made, compared on resume, refused before anything runs."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from conftest import TINY, cli, settings

from tuning.study.identity import (
    IDENTITY_ATTR,
    StudyMismatch,
    check_resume,
    differences,
    stored_config,
    study_identity,
)

STORAGE = "sqlite:///experiments/plants/optuna.db"


def test_identity_keeps_what_defines_a_trial_and_leaves_out_what_may_change():
    identity = study_identity(settings())
    assert identity["seed"] == 42 and identity["data.n_samples"] == 400
    assert identity["split.val"] == 0.2 and identity["study.metric"] == "auto"
    assert identity["search_space.units"] == {"type": "int", "low": 8, "high": 128, "log": True}
    assert identity["training.max_epochs"] == 3
    for key in identity:
        assert not key.startswith(("sampler", "pruner", "tracking", "paths", "final", "study.n_trials"))
        assert key not in ("training.threads", "study.timeout", "study.storage", "study.top")
    # What a resume may change gives the same identity.
    same = study_identity(
        settings(
            "study.n_trials=50",
            "sampler=random",
            "pruner=hyperband",
            "training.threads=1",
            "study.timeout=60",
            "verbose=true",
        )
    )
    assert same == identity


def test_a_data_file_is_identified_by_its_content(tmp_path):
    table = tmp_path / "rows.csv"
    table.write_text("a,b,y\n1,2,0\n")
    cfg = settings("data=csv", f"data.path={table}", "data.target=y", tiny=False)
    first = study_identity(cfg)
    moved = tmp_path / "moved.csv"
    moved.write_bytes(table.read_bytes())  # another path, the same rows: the same study
    assert differences(first, study_identity({**cfg, "data": {**cfg["data"], "path": str(moved)}})) == (
        [],
        [],
    )
    table.write_text("a,b,y\n1,2,1\n")  # same path, other rows
    refused, _ = differences(first, study_identity(cfg))
    assert len(refused) == 1 and refused[0].startswith("data.path.sha256: study has ")


def test_differences_name_each_key_with_both_values():
    old = study_identity(settings())
    new = study_identity(settings("data.n_samples=500", "seed=7", "search_space.activation=tanh"))
    refused, widened = differences(old, new)
    assert widened == []
    assert refused == [
        "data.n_samples: study has 400, command has 500",
        "search_space.activation: study has {type: categorical, choices: [relu, tanh, elu]}, command has tanh",
        "seed: study has 42, command has 7",
    ]
    with pytest.raises(StudyMismatch) as caught:
        check_resume("plants", old, new)
    text = str(caught.value)
    assert text.startswith("study: 'plants' was made with other settings (3 differences)")
    assert "study.name=NEW" in text and "Growing a search space" in text


def test_a_numeric_range_may_widen_but_not_narrow_or_change_kind():
    old = study_identity(settings())
    wider = study_identity(settings("search_space.units.high=256", "search_space.dropout.low=0.0"))
    assert check_resume("plants", old, wider) == [
        "search_space.units: {type: int, low: 8, high: 128, log: true} -> {type: int, low: 8, high: 256, log: true}"
    ]
    for change in (
        "search_space.units.high=64",  # narrower: stored trials fall outside
        "search_space.units.log=false",
        "search_space.epochs.step=10",
        "search_space.activation.choices=[relu,tanh,elu,selu]",  # Optuna cannot grow a categorical
    ):
        with pytest.raises(StudyMismatch):
            check_resume("plants", old, study_identity(settings(change)))


def test_a_study_without_identity_is_accepted():
    assert check_resume("plants", None, study_identity(settings("seed=3"))) == []


def test_stored_config_hides_credentials():
    cfg = settings("study.storage=postgresql://me:secret@db/optuna", "tracking.uri=http://u:pw@host:5000")
    out = stored_config(cfg)
    assert "secret" not in str(out) and "pw@" not in str(out) and "hydra" not in out


def make_study(identity: dict | None) -> optuna.Study:
    Path("experiments/plants").mkdir(parents=True)
    study = optuna.create_study(study_name="plants", storage=STORAGE, direction="minimize")
    study.set_user_attr("metric", "val_log_loss")
    if identity is not None:
        study.set_user_attr(IDENTITY_ATTR, identity)
    return study


def add_trial(study: optuna.Study, value: float) -> None:
    """A finished trial sampled from the real space, without training (the study is what is tested)."""
    from tuning.config import validate, validate_for_task

    cfg = settings()
    space = validate_for_task(cfg, validate(cfg), "binary")
    trial = study.ask()
    space.suggest(trial)
    trial.set_user_attr("seed", 42 + trial.number)
    trial.set_user_attr("best_epoch", 2)
    study.tell(trial, value)


def test_a_changed_resume_is_refused_before_hydra_writes_anything(in_tmp, capsys):
    make_study(study_identity(settings()))
    before = sorted(p.relative_to(in_tmp) for p in in_tmp.rglob("*"))
    started = time.perf_counter()
    code = cli(["sweep", *TINY, "seed=7", "search_space.activation.choices=[relu,tanh]"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: study: 'plants' was made with other settings (2 differences)")
    assert lines[1:3] == [
        "  search_space.activation: study has {type: categorical, choices: [relu, tanh, elu]}, "
        "command has {type: categorical, choices: [relu, tanh]}",
        "  seed: study has 42, command has 7",
    ]
    assert "study.name=NEW" in lines[-1]
    assert sorted(p.relative_to(in_tmp) for p in in_tmp.rglob("*")) == before  # no Hydra run folder
    assert time.perf_counter() - started < 10


def test_resume_that_changes_only_search_settings_runs(in_tmp, capsys):
    """n_trials, sampler, pruner, tracking: allowed; the study already has its trial, nothing trains."""
    from tuning.commands.sweep import run

    study = make_study(study_identity(settings()))
    add_trial(study, 0.5)
    run(settings("study.n_trials=1", "sampler=random", "pruner=none"))
    assert Path("experiments/plants/best.yaml").is_file()


def test_a_study_made_before_identities_adopts_the_commands(in_tmp, caplog):
    from tuning.commands.sweep import run

    study = make_study(None)
    add_trial(study, 0.5)
    with caplog.at_level("INFO"):
        run(settings("study.n_trials=1"))
    stored = optuna.load_study(study_name="plants", storage=STORAGE).user_attrs
    assert stored[IDENTITY_ATTR] == study_identity(settings("study.n_trials=1"))
    assert stored["config"]["seed"] == 42
    assert "adopted this command's settings" in caplog.text
    # From now on a change is refused.
    with pytest.raises(StudyMismatch):
        run(settings("study.n_trials=1", "seed=5"))


def test_a_widened_range_becomes_the_studys(in_tmp, caplog):
    from tuning.commands.sweep import run

    study = make_study(study_identity(settings()))
    study.set_user_attr("config", stored_config(settings()))
    add_trial(study, 0.5)
    with caplog.at_level("INFO"):
        run(settings("study.n_trials=1", "search_space.units.high=256"))
    assert "search space widened: search_space.units" in caplog.text
    stored = optuna.load_study(study_name="plants", storage=STORAGE).user_attrs
    assert stored[IDENTITY_ATTR]["search_space.units"]["high"] == 256
    assert stored["config"]["search_space"]["units"]["high"] == 256
    assert stored["config"]["sampler"]["name"] == "tpe"  # the rest stays as the study was made
    # Narrowing back is now a narrowing of the study's space: refused.
    with pytest.raises(StudyMismatch):
        run(settings("study.n_trials=1"))


def test_a_missing_data_file_is_left_to_the_data_check(tmp_path):
    table = tmp_path / "rows.csv"
    table.write_text("a,b,y\n1,2,0\n")
    cfg = settings("data=csv", f"data.path={table}", "data.target=y", tiny=False)
    first = study_identity(cfg)
    table.unlink()
    assert differences(first, study_identity(cfg)) == ([], [])
