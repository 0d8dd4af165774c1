"""training.kept_models: trials train one kept compiled model per structure, to the values a
fresh model per trial gives (1e-6), for every activation, loss and optimizer of the space."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import TINY, cli, read_summary, settings

from tuning.config import parse
from tuning.config.space import Hyperparameters
from tuning.config.tasks import LOSSES
from tuning.data import load_dataset
from tuning.model import reuse
from tuning.search.trial import fit_trial

pytestmark = pytest.mark.slow

# Dropout masks and a partial last batch (400 rows, batch 48) must replay exactly.
BASE = Hyperparameters(units=(24, 12), dropout=0.2, batch_size=48, epochs=6, learning_rate=3e-3)


def _data(name: str, *extra: str):
    sized = ["data.n_samples=400"] if name in ("plants", "regression") else []
    parsed = parse(settings(f"data={name}", *sized, *extra, "tracking=none", tiny=False))
    return parsed.training, load_dataset(parsed.data, parsed.split, parsed.seed)


def _assert_close(fresh, kept) -> None:
    """The same fit to 1e-6 (float32 rounding: nearly always the same bits). A trial whose loss
    became NaN is compared up to that epoch: after it, its weights are NaN either way."""
    assert (kept.best_epoch, kept.epochs_trained, kept.n_params, kept.diverged_at) == (
        fresh.best_epoch,
        fresh.epochs_trained,
        fresh.n_params,
        fresh.diverged_at,
    )
    assert fresh.history.keys() == kept.history.keys()
    epochs = fresh.epochs_trained if fresh.diverged_at is None else fresh.diverged_at
    for key in fresh.history:
        np.testing.assert_allclose(
            kept.history[key][:epochs], fresh.history[key][:epochs], rtol=1e-6, err_msg=key
        )
    for part in ("train", "val"):
        a, b = getattr(fresh, part), getattr(kept, part)
        assert a.keys() == b.keys()
        np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=1e-6, err_msg=part)
    # A gap is train minus validation: to 1e-6 of the values it is the difference of.
    assert fresh.gaps.keys() == kept.gaps.keys()
    for name, gap in fresh.gaps.items():
        metric = name.removeprefix("gap_")
        scale = max(abs(fresh.train[metric]), abs(fresh.val[metric]))
        assert kept.gaps[name] == pytest.approx(gap, rel=1e-6, abs=1e-6 * scale), name


def _trials(dataset, training, points, *, kept_models: int):
    return [
        fit_trial(hp, dataset, training, seed=11 + i, kept_models=kept_models)[1]
        for i, hp in enumerate(points)
    ]


@pytest.mark.parametrize(
    ("data", "points", "overrides"),
    [
        # binary: every activation and optimizer of the default space, widths and rates that change
        # from trial to trial inside one structure, no dropout, and both binary losses
        (
            "plants",
            [
                BASE,
                replace(BASE, units=(100, 9), dropout=0.45, learning_rate=1e-2),
                replace(BASE, activation="tanh", optimizer="rmsprop"),
                # a trial whose loss becomes NaN, and one of its structure after it
                replace(BASE, activation="elu", optimizer="sgd", learning_rate=1e12),
                replace(BASE, activation="elu", optimizer="sgd", dropout=0.0, learning_rate=5e-2),
                replace(BASE, units=(7, 128), loss=LOSSES["binary"][1]),
                replace(BASE, units=(40,), dropout=0.1),
                replace(BASE, units=(8, 16, 30), activation="sigmoid"),
                replace(BASE, activation="selu", dropout=0.0),
            ],
            (),
        ),
        # early stopping ends trials (the best weights restored), then the next one reuses the model
        (
            "plants",
            [replace(BASE, epochs=25, learning_rate=lr, units=(30, 30, 30)) for lr in (0.05, 0.02, 0.08)],
            ("training.early_stopping.patience=1",),
        ),
        # multiclass: every loss, one-hot and sparse labels
        (
            "iris",
            [replace(BASE, loss=loss, units=(16, 20 - 3 * i)) for i, loss in enumerate(LOSSES["multiclass"])],
            (),
        ),
        # regression: the target's units baked into the metrics
        ("regression", [replace(BASE, loss=loss) for loss in LOSSES["regression"]], ()),
    ],
)
def test_kept_models_give_the_values_of_fresh_ones(data, points, overrides):
    training, dataset = _data(data, *overrides)
    fresh = _trials(dataset, training, points, kept_models=0)
    if overrides:  # early stopping did end trials
        assert all(r.early_stopped and r.epochs_trained < 25 for r in fresh)
    elif data == "plants":
        assert [r.diverged_at is not None for r in fresh].count(True) == 1
    reuse.forget()
    kept = _trials(dataset, training, points, kept_models=8)
    kept_again = _trials(dataset, training, points, kept_models=8)  # every graph now traced
    for a, b, c in zip(fresh, kept, kept_again, strict=True):
        _assert_close(a, b)
        _assert_close(a, c)


def test_trials_of_one_structure_share_one_model_and_others_get_their_own():
    training, dataset = _data("plants")
    reuse.forget()
    first, _ = fit_trial(BASE, dataset, training, seed=1, kept_models=8)
    # other widths, dropout rate and learning rate: the same kept model
    second, result = fit_trial(
        replace(BASE, units=(30, 3), dropout=0.3, learning_rate=0.05),
        dataset,
        training,
        seed=2,
        kept_models=8,
    )
    others = [
        fit_trial(replace(BASE, **change), dataset, training, seed=3, kept_models=8)[0]
        for change in ({"optimizer": "sgd"}, {"activation": "tanh"}, {"units": (20, 3, 5)})
    ]
    wider, _ = fit_trial(replace(BASE, units=(300, 3)), dataset, training, seed=4, kept_models=8)
    assert first is second
    assert len({id(m) for m in [first, *others]}) == 4  # other optimizer, activation, depth
    assert wider is not first
    assert (wider.structure.width, first.structure.width) == (512, 32)  # BASE's widest layer: 24
    assert result.n_params == (2 * 30 + 30) + (30 * 3 + 3) + (3 + 1)  # its own, not the kept widths
    # at most kept_models are kept: the least recently used goes first
    fit_trial(replace(BASE, optimizer="rmsprop"), dataset, training, seed=5, kept_models=1)
    again, _ = fit_trial(BASE, dataset, training, seed=6, kept_models=1)
    assert again is not first
    # the unused part of every kept kernel stays zero through training
    kernel = second.hidden[0].kernel.numpy()
    assert np.all(kernel[:, 30:] == 0) and np.any(kernel[:, :30] != 0)


def test_by_default_each_trial_builds_a_fresh_model():
    training, dataset = _data("plants")
    assert training.kept_models == 0  # opt-in: ~40 MB a kept model, for a gain that depends on the sweep
    first, _ = fit_trial(BASE, dataset, training, seed=1, kept_models=training.kept_models)
    second, _ = fit_trial(BASE, dataset, training, seed=2, kept_models=training.kept_models)
    assert first is not second
    assert type(first).__name__ == "Sequential"


@pytest.mark.parametrize("engine", ["optuna", "keras_tuner", "optuna-cv"])
def test_a_seeded_sweep_finds_the_same_trials_and_values_with_kept_models(tmp_path, monkeypatch, engine):
    """The whole sweep, sampler and pruner included (and k folds per trial): the same points,
    states and values."""
    engine_args = {
        "optuna": [],
        "keras_tuner": ["engine=keras_tuner", "engine.algorithm=random"],
        "optuna-cv": ["cv.folds=3"],
    }[engine]
    name = "plants-keras_tuner" if engine == "keras_tuner" else "plants"
    engine = engine.removesuffix("-cv")
    runs = []
    for flag in ("0", "8"):
        (tmp_path / flag).mkdir()
        monkeypatch.chdir(tmp_path / flag)
        reuse.forget()
        args = [
            *TINY,
            *engine_args,
            "study.n_trials=8",
            "training.max_epochs=4",
            f"training.kept_models={flag}",
        ]
        assert cli(["sweep", *args]) == 0
        summary = read_summary(tmp_path / flag / "experiments" / name, name, engine)
        runs.append([(t.number, t.state, t.params, t.value) for t in summary.trials])
    fresh, kept = runs
    assert [t[:3] for t in kept] == [t[:3] for t in fresh]
    assert len({tuple(sorted(t[2].items())) for t in kept}) == 8  # eight different points
    assert all(t[1] in ("COMPLETE", "PRUNED") for t in kept) and kept[0][3] is not None
    values = [[np.nan if t[3] is None else t[3] for t in run] for run in (kept, fresh)]
    np.testing.assert_allclose(*values, rtol=1e-6)
