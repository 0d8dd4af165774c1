"""The ``hp`` a custom builder receives: KerasTuner's API over our Suggesters (no TensorFlow)."""

from __future__ import annotations

import keras_tuner
import optuna
import pytest

from tuning.config.space import FixedParams
from tuning.model.hp import HpError, HyperParameters


def draw_all(hp) -> dict:
    """A builder's hp calls, KerasTuner style, with a conditional branch."""
    out = {
        "layers": hp.Int("layers", 1, 3),
        "units": hp.Int("units", 32, 512, step=32),
        "lr": hp.Float("lr", 1e-4, 1e-2, sampling="log"),
        "rate": hp.Float("rate", 0.0, 0.5, step=0.1),
        "act": hp.Choice("act", ["relu", "tanh"]),
        "bn": hp.Boolean("bn"),
        "fixed": hp.Fixed("fixed", 7),
        "kind": hp.Choice("kind", ["mlp", "cnn"]),
    }
    with hp.conditional_scope("kind", ["cnn"]):
        out["filters"] = hp.Int("filters", 8, 64, step=8)
    out["wide"] = hp.Int("wide", 2, 32, step=2, sampling="log")
    return out


def test_defaults_match_keras_tuner():
    ours, theirs = draw_all(HyperParameters()), draw_all(keras_tuner.HyperParameters())
    assert ours == theirs
    assert ours["filters"] is None  # inactive branch: None, as KerasTuner
    assert ours == {
        "layers": 1,
        "units": 32,
        "lr": 1e-4,
        "rate": 0.0,
        "act": "relu",
        "bn": False,
        "fixed": 7,
        "kind": "mlp",
        "filters": None,
        "wide": 2,
    }


def test_replay_from_stored_values_asks_only_active_names():
    stored = {"layers": 2, "units": 96, "lr": 0.003, "rate": 0.2, "act": "tanh", "bn": True}
    stored |= {"kind": "cnn", "filters": 24, "wide": 8}
    hp = HyperParameters(FixedParams(stored))
    out = draw_all(hp)
    assert out == {**stored, "fixed": 7}
    assert hp.sampled == stored  # Fixed is a value, not a trial parameter
    assert hp.values == {**stored, "fixed": 7} and hp.get("filters") == 24 and "filters" in hp

    inactive = HyperParameters(FixedParams({**stored, "kind": "mlp"}))
    assert draw_all(inactive)["filters"] is None
    assert "filters" not in inactive.sampled
    with pytest.raises(ValueError, match="inactive"):
        inactive.get("filters")
    with pytest.raises(KeyError):
        inactive.get("never_asked")


def test_over_a_real_optuna_trial_values_are_in_range_and_stored_as_params():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(12):
        trial = study.ask()
        hp = HyperParameters(trial)
        out = draw_all(hp)
        assert 1 <= out["layers"] <= 3 and out["units"] % 32 == 0 and 32 <= out["units"] <= 512
        assert 1e-4 <= out["lr"] <= 1e-2 and out["act"] in ("relu", "tanh")
        assert round(out["rate"] * 10) == pytest.approx(out["rate"] * 10)
        assert out["wide"] in (2, 4, 8, 16, 32)  # log with a step multiplies, as KerasTuner's
        assert trial.params == hp.sampled  # what the study stores is what the builder drew
        assert ("filters" in trial.params) == (out["kind"] == "cnn")
        assert isinstance(out["bn"], bool) and isinstance(out["units"], int)
        study.tell(trial, 0.0)
    kinds = {t.params["kind"] for t in study.trials}
    assert kinds == {"mlp", "cnn"}, "both branches drawn in 12 random trials"


def test_the_same_name_again_returns_the_same_value_a_different_range_is_one_line():
    hp = HyperParameters(FixedParams({"units": 64}), builder="my_models.build")
    assert hp.Int("units", 32, 512, step=32) == 64
    assert hp.Int("units", 32, 512, step=32) == 64
    with pytest.raises(HpError) as err:
        hp.Int("units", 16, 64)
    assert str(err.value) == (
        "model.build: my_models.build: asks for 'units' twice with different ranges: "
        "Int(32, 512, step=32) and Int(16, 64); give each range its own name"
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda hp: hp.Int("n", 5, 1), "hp.Int('n'): min_value (5) > max_value (1)"),
        (lambda hp: hp.Int("n", 1.5, 3), "hp.Int('n'): 1.5 is not an integer"),
        (lambda hp: hp.Float("lr", 0.0, 1.0, sampling="log"), "sampling='log' needs min_value > 0"),
        (lambda hp: hp.Float("lr", 0.1, 1.0, sampling="reverse_log"), "sampling='reverse_log'; allowed"),
        (lambda hp: hp.Choice("act", []), "hp.Choice('act'): values=[]; must be a non-empty list"),
        (lambda hp: hp.Choice("act", ["a"], default="b"), "default='b' is not one of ['a']"),
        (lambda hp: hp.Int("epochs", 1, 3), "'epochs', which is the search space's"),
    ],
)
def test_bad_calls_are_one_line_naming_the_builder(call, message):
    hp = HyperParameters(builder="my_models.build", reserved=("batch_size", "epochs"))
    with pytest.raises(HpError, match="^model.build: my_models.build: ") as err:
        call(hp)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_scope_on_an_unknown_parent_and_a_changed_builder_are_named():
    hp = HyperParameters(builder="b")
    with (
        pytest.raises(HpError, match="no hyperparameter 'kind' asked before it"),
        hp.conditional_scope("kind", ["cnn"]),
    ):
        pass
    replay = HyperParameters(FixedParams({"units": 8}), builder="b")
    with pytest.raises(HpError, match="asks for 'depth', which the stored values do not hold"):
        replay.Int("depth", 1, 3)
