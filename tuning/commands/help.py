"""`tuning sweep --help`: the config groups with their choices and the keys people change most.

Hydra's own help prints the whole composed config (120+ lines); that stays behind
``--cfg job``. The defaults shown here are read from the composed config, overrides applied,
so ``tuning sweep data=csv --help`` shows the csv source's keys. No TensorFlow, no Optuna.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuning.config import compose, conf_dir, group_options, resolved
from tuning.errors import ConfigError
from tuning.payload import RawConfig

# key -> what it does; the value shown beside it is the composed config's.
COMMON_KEYS: dict[str, str] = {
    "study.n_trials": "total finished trials to reach (running again resumes up to it)",
    "study.metric": "what ranks trials; auto = val_log_loss / val_rmse (README: Which number ranks trials)",
    "study.name": "study name and folder experiments/<name>/",
    "study.storage": "Optuna storage URL; null = SQLite file in the study folder; grpc://HOST:PORT = `tuning storage-proxy`",
    "study.timeout": "seconds for this run; null = no limit",
    "budget.epochs": "epochs for the whole study, all workers and resumes; null = none (docs/engines.md#budgets)",
    "warm_start.from": "seed a new study from an earlier study or a best.yaml (docs/engines.md#warm-starts)",
    "seed": "seeds data splits, the sampler and each trial",
    "training.max_epochs": "cap on every trial's epochs (e.g. 5 for a quick run)",
    "training.early_stopping.patience": "epochs without improvement before a trial stops",
    "training.simulate_epoch_seconds": "rehearsal: epochs sleep this long, values made up, no TensorFlow (docs/workers.md)",
    "training.threads": "CPU threads per worker; null = all cores (workers=N: cores / N)",
    "workers": "worker processes on this machine sharing the study (README: Several workers)",
    "tracking.uri": "MLflow store; null = sqlite:///experiments/mlflow.db",
    "model.build": "model=custom: your builder, e.g. my_models.build (README: Your own model)",
    "cv.folds": "k-fold scores: each trial's value is the mean over k folds (README: Overfitting-aware selection)",
}


def _get(raw: RawConfig, dotted: str) -> Any:
    """The composed config's value at ``dotted`` (None where it has none): help lists it as composed."""
    value: Any = raw
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _defaults(overrides: Sequence[str]) -> dict[str, str]:
    """The option each group takes in this command (``group=option`` overrides applied)."""
    import yaml

    chosen: dict[str, str] = {}
    for entry in yaml.safe_load((conf_dir() / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            chosen.update({str(k): str(v) for k, v in entry.items()})
    for override in overrides:
        key, _, value = override.partition("=")
        if key in chosen:
            chosen[key] = value
    return chosen


def sweep_help(args: Sequence[str]) -> str:
    """The help text for ``tuning sweep`` with ``args`` (its overrides) applied."""
    overrides = [a for a in args if not a.startswith("-")]
    try:
        raw = resolved(compose("config", overrides))  # shown as composed: help parses nothing
    except ConfigError as err:  # help still helps: show the defaults and say what was wrong
        raw, overrides = resolved(compose("config", [])), []
        problem = f"\n(ignored the overrides: {err})\n"
    else:
        problem = ""
    chosen = _defaults(overrides)
    groups = [
        f"  {group + '=':<14}{chosen[group]}"
        + "".join(f", {o}" for o in group_options(group) if o != chosen[group])
        for group in chosen
    ]
    data_keys = ", ".join(f"data.{k}" for k in raw["data"] if k != "source")
    keys = [f"  {f'{key}={_show(_get(raw, key))}':<38} {text}" for key, text in COMMON_KEYS.items()]
    space = ", ".join(raw["search_space"])
    return "\n".join(
        [
            "usage: tuning sweep [KEY=VALUE ...] [group=option ...]",
            "",
            "Runs, or resumes, an Optuna study over the search space and tracks every trial in MLflow.",
            "Every setting is a Hydra override; running the same command again resumes the study.",
            problem,
            "config groups (group=option; the first is this command's choice):",
            *groups,
            "",
            "keys people change most (value in this command):",
            *keys,
            f"  data.* ({chosen.get('data', '?')}): {data_keys}",
            f"  search_space.* (fix one: search_space.activation=relu; range: "
            f"search_space.units.high=256): {space}",
            "",
            "more:",
            "  tuning sweep --cfg job       the whole composed config; nothing runs",
            "  tuning sweep --hydra-help    Hydra's own flags (multirun, config dirs, ...)",
            "  +KEY=VALUE adds a key the config does not have; ~KEY removes one",
            "  README: Usage, Search space, Your own model, Data, Resume, Tracking",
        ]
    )


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
