"""Find, compose and validate configs. Everything here runs before TensorFlow is imported."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from tuning.config.model import model_builder, split_path
from tuning.config.schema import (
    Component,
    FinalConfig,
    SplitConfig,
    StudyConfig,
    TrackingConfig,
    TrainingConfig,
    check_bool,
    check_int,
)
from tuning.config.selection import Selection, check_folds, parse_selection
from tuning.config.space import SearchSpace
from tuning.config.space_config import check_task, parse_space
from tuning.config.storage import default_storage_url
from tuning.config.tasks import METRICS, direction_of, monitored_metrics, resolve_loss, resolve_metric
from tuning.errors import ConfigError


def dataset_name(data: Mapping[str, Any]) -> str:
    """The data set's name without loading it: ``data.name``, else the data file's stem.

    Kept here, free of pandas and scikit-learn, because composing any config resolves it
    (``study.name: ${dataset_name:${data}}``) and config errors must answer fast.

    Raises:
        ConfigError: under ``data.path`` for a file source with neither set.
    """

    def option(key: str) -> Any:
        try:
            value = data.get(key)
        except MissingMandatoryValue:  # a '???' value still unset
            return None
        return None if value in (None, "", "???") else value

    if option("name") is not None:
        return str(option("name"))
    if option("path") is not None:
        return Path(str(option("path"))).stem
    if data.get("source") == "csv":
        raise ConfigError("data.path", "is required: set data.path=customers.csv")
    return str(data.get("source") or "data")


def study_name(data: Mapping[str, Any], engine: Any = "optuna", model: Any = None) -> str:
    """The default study name: the data set's, with the engine's name after it for any engine
    but Optuna (``plants``, ``plants-keras_tuner``), so two engines on one data set keep
    separate studies, folders and best.yaml files; a custom model adds its module's name
    (``model.build=my_models.build`` on plants: ``plants-my_models``)."""
    name = dataset_name(data)
    name = name if str(engine) in ("optuna", "None", "") else f"{name}-{engine}"
    if isinstance(model, Mapping) and model.get("name") == "custom":
        try:
            build = model.get("build")
        except MissingMandatoryValue:  # '???': validate() says model.build is required
            build = None
        try:
            module = split_path(str(build))[0].rsplit(".", 1)[-1] if build not in (None, "???") else "custom"
        except ConfigError:  # a malformed path: validate() names it
            module = "custom"
        name = f"{name}-{module}"
    return name


if not OmegaConf.has_resolver("dataset_name"):
    OmegaConf.register_new_resolver("dataset_name", dataset_name)
if not OmegaConf.has_resolver("study_name"):
    OmegaConf.register_new_resolver("study_name", study_name)


def conf_dir() -> Path:
    """``conf/`` shipped inside the wheel (``tuning/conf``), else the checkout's top-level one."""
    package = Path(__file__).resolve().parents[1]  # tuning/
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


def group_options(group: str, root: Path | None = None) -> list[str]:
    """The names a config group offers (``sampler`` -> ``cmaes, gp, qmc, random, tpe``)."""
    folder = (root or conf_dir()) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def compose(config_name: str, overrides: Sequence[str], config_dir: Path | None = None) -> DictConfig:
    """Compose a config the way the Hydra app will, turning Hydra's errors into ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir or conf_dir()), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=False)
    except Exception as err:
        raise hydra_error(err, config_dir) from None
    finally:
        GlobalHydra.instance().clear()


def hydra_error(err: Exception, config_dir: Path | None = None) -> ConfigError:
    """One line out of Hydra's multi-line composition errors."""
    text = str(err).strip()
    missing = re.search(r"Could not find '([\w/]+)/([^']+)'", text)
    if missing:
        group, name = missing.groups()
        options = ", ".join(group_options(group, config_dir)) or "none"
        return ConfigError(group.replace("/", "."), f"'{name}' is not one of: {options}")
    unknown = re.search(r"Key '([^']+)' is not in struct", text)
    if unknown:
        full = re.search(r"full_key: (\S+)", text)
        key = full.group(1) if full else unknown.group(1)
        return ConfigError(key, "unknown key (prefix the override with + to add a new key)")
    no_match = re.search(r"Could not override '([^']+)'", text)
    if no_match:
        key = no_match.group(1)
        return ConfigError(
            key, f"is not a config group or key of this config; to add it as a new key: +{key}=VALUE"
        )
    first = next((line for line in text.splitlines() if line.strip()), type(err).__name__)
    override = getattr(err, "override", None)  # Hydra's OverrideParseException: the value's syntax
    if isinstance(override, str) and "=" in override:
        key = override.split("=", 1)[0].lstrip("+~")
        return ConfigError(
            key,
            f"cannot parse the value ({first}); quote a value holding '=', spaces or brackets: "
            f"""'{key}="..."'""",
        )
    return ConfigError("", f"invalid configuration: {first}")


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain containers, interpolations resolved (bad ones become ConfigError)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:  # our own check, raised inside a resolver
            raise cause from None
        full = getattr(err, "full_key", "")
        raise ConfigError(str(full), str(err).splitlines()[0]) from None


def study_direction(metric: str, direction: str) -> str:
    """``direction: auto`` resolved from the metric (accuracy/auc up, losses and errors down)."""
    return direction_of(metric) if direction == "auto" else direction


def storage_url(study: Mapping[str, Any], study_dir: str | Path) -> str:
    return str(study.get("storage") or default_storage_url(study_dir))


ALL_METRICS = ["auto", *sorted({m for task in METRICS for m in monitored_metrics(task)})]


@dataclass(frozen=True)
class Settings:
    """The whole sweep's settings, checked: each function takes the part it needs.

    ``raw`` is the resolved config as composed: what best.yaml, the study's stored config and
    MLflow record (the config boundary), never read by key for a setting.
    """

    raw: Mapping[str, Any]
    seed: int
    workers: int
    verbose: bool
    split: SplitConfig
    study: StudyConfig
    training: TrainingConfig
    tracking: TrackingConfig
    final: FinalConfig
    folds: int | None
    engine: Component
    sampler: Component
    pruner: Component
    selection: Selection
    space: SearchSpace
    paths_root: str
    study_dir: str


def parse(cfg: Mapping[str, Any]) -> Settings:
    """Check everything that can be checked without the data, once, into typed parts.

    Raises:
        ConfigError: naming the key, the value found and what is allowed.
    """
    raw = resolved(cfg) if isinstance(cfg, DictConfig) else cfg
    check_int("seed", raw.get("seed"), 0)
    check_int("workers", raw.get("workers", 1), 1)
    check_bool("verbose", raw.get("verbose", False))
    study = StudyConfig.parse(raw["study"], ALL_METRICS)
    split = SplitConfig.parse(raw.get("split", {}))
    training = TrainingConfig.parse(raw["training"], ALL_METRICS)
    selection, folds = parse_selection(raw), check_folds(raw)
    paths = raw.get("paths") or {}
    return Settings(
        raw=raw,
        seed=int(raw["seed"]),
        workers=int(raw.get("workers", 1)),
        verbose=bool(raw.get("verbose", False)),
        split=split,
        study=study,
        training=training,
        tracking=TrackingConfig.parse(raw.get("tracking") or {}),
        final=FinalConfig.parse(raw.get("final") or {}),
        folds=folds,
        engine=Component.parse("engine", raw.get("engine") or {}, "optuna"),
        sampler=Component.parse("sampler", raw.get("sampler") or {}, "tpe"),
        pruner=Component.parse("pruner", raw.get("pruner") or {}, "none"),
        selection=selection,
        space=parse_space(raw["search_space"], builder=model_builder(raw)),
        paths_root=str(paths.get("root", "experiments")),
        study_dir=str(paths.get("study_dir", f"experiments/{study.name}")),
    )


def validate(cfg: Mapping[str, Any]) -> SearchSpace:
    """``parse``'s checks; returns the parsed search space."""
    return parse(cfg).space


def for_task(cfg: Mapping[str, Any], task: str) -> dict[str, Any]:
    """``cfg`` with ``auto`` metrics resolved for ``task``: ``study.metric`` (and the early-stopping
    monitor that follows it) become the task's selection metric, ``study.direction`` follows."""
    study = dict(cfg["study"])
    study["metric"] = resolve_metric(str(study["metric"]), task)
    study["direction"] = study_direction(study["metric"], str(study.get("direction", "auto")))
    training = dict(cfg["training"])
    stopping = dict(training["early_stopping"])
    stopping["monitor"] = resolve_metric(str(stopping["monitor"]), task)
    training["early_stopping"] = stopping
    return {**cfg, "study": study, "training": training}


def validate_for_task(cfg: Mapping[str, Any], space: SearchSpace, task: str) -> SearchSpace:
    """Checks that need the task: losses, objective metric and early-stopping monitor."""
    cfg = for_task(cfg, task)
    allowed = monitored_metrics(task)
    for key, value in (
        ("study.metric", cfg["study"]["metric"]),
        ("training.early_stopping.monitor", cfg["training"]["early_stopping"]["monitor"]),
    ):
        if value not in allowed:
            raise ConfigError(
                key, f"{value!r} is not computed for a {task} task; allowed: auto, {', '.join(allowed)}"
            )
    check_task(space, task)
    space = parse_space(cfg["search_space"], task, space.builder)
    _check_comparable(cfg["study"]["metric"], space, task)
    return space


def _check_comparable(metric: str, space: SearchSpace, task: str) -> None:
    """Refuse to rank trials by their training loss when trials train with different losses:
    a focal loss is always smaller than a cross-entropy, so the search would pick the loss
    function, not the model."""
    if metric.removeprefix("val_") != "loss" or "loss" not in space.dimensions:
        return
    losses = sorted({resolve_loss(str(c), task) for c in space.dimensions["loss"].choices})
    if len(losses) > 1:
        raise ConfigError(
            "study.metric",
            f"{metric} is each trial's own loss function, and the search space tries {len(losses)} "
            f"({', '.join(losses)}) whose values are on different scales; rank by study.metric=auto "
            f"({resolve_metric('auto', task)}, the same for every trial) or fix the loss: "
            f"search_space.loss={losses[0]}",
        )
