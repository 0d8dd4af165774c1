"""Find, compose and validate configs. Everything here runs before TensorFlow is imported."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from tuning.config.composition import compose as compose
from tuning.config.composition import conf_dir as conf_dir
from tuning.config.composition import group_options as group_options
from tuning.config.composition import hydra_error as hydra_error
from tuning.config.data import DataConfig, dataset_name
from tuning.config.model import model_builder, split_path
from tuning.config.schema import (
    BudgetConfig,
    Component,
    FinalConfig,
    SplitConfig,
    StopConfig,
    StudyConfig,
    TrackingConfig,
    TrainingConfig,
    WarmStartConfig,
    check_bool,
    check_int,
)
from tuning.config.selection import Selection, check_folds, parse_selection
from tuning.config.space import SearchSpace
from tuning.config.space_config import check_task, parse_space
from tuning.config.storage import default_storage_url
from tuning.config.tasks import METRICS, TASKS, direction_of, monitored_metrics, resolve_loss, resolve_metric
from tuning.errors import ConfigError
from tuning.payload import RawConfig


def study_name(data: RawConfig, engine: Any = "optuna", model: Any = None) -> str:
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


ALL_METRICS = ["auto", *sorted({m for task in METRICS for m in monitored_metrics(task)})]


@dataclass(frozen=True)
class Settings:
    """The whole sweep's settings, checked: each function takes the part it needs.

    ``raw`` is the resolved config as composed: what best.yaml, the study's stored config and
    MLflow record (the config boundary), never read by key for a setting.
    """

    raw: RawConfig
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
    data: DataConfig
    paths_root: str
    study_dir: str
    stop: StopConfig = field(default_factory=StopConfig)  # when the search ends before n_trials
    budget: BudgetConfig = field(default_factory=BudgetConfig)  # epochs / minutes for the whole study
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)  # seed from an earlier study

    @property
    def storage_url(self) -> str:
        """``study.storage``, else the study's own SQLite file (embedded, no server)."""
        return self.study.storage or default_storage_url(self.study_dir)

    @property
    def task(self) -> str | None:
        """``data.task`` when the config sets it (else the data decides)."""
        return self.data.task if self.data.task in TASKS else None


def parse(cfg: RawConfig) -> Settings:
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
    budget = BudgetConfig.parse(raw.get("budget") or {})
    if study.n_trials is None and not budget.limited:
        raise ConfigError(
            "study.n_trials",
            "null needs a budget to end the search; allowed: an integer >= 1, or set budget.epochs or budget.minutes",
        )
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
        data=DataConfig.parse(raw.get("data") or {}),
        paths_root=str(paths.get("root", "experiments")),
        study_dir=str(paths.get("study_dir", f"experiments/{study.name}")),
        stop=StopConfig.parse(raw.get("stop") or {}),
        budget=budget,
        warm_start=WarmStartConfig.parse(raw.get("warm_start") or {}),
    )


def validate(cfg: RawConfig) -> SearchSpace:
    """``parse``'s checks; returns the parsed search space."""
    return parse(cfg).space


def with_task(settings: Settings, task: str) -> Settings:
    """``settings`` for the data's task: the checks that need it (losses, metrics against the
    task), and ``auto`` resolved (the study's metric and direction, the early-stopping monitor)."""
    space = validate_for_task(settings.raw, settings.space, task)
    raw = for_task(settings.raw, task)
    study = replace(settings.study, metric=raw["study"]["metric"], direction=raw["study"]["direction"])
    monitor = str(raw["training"]["early_stopping"]["monitor"])
    stopping = replace(settings.training.early_stopping, monitor=monitor)
    training = replace(settings.training, early_stopping=stopping)
    return replace(settings, raw=raw, study=study, training=training, space=space)


def for_task(cfg: RawConfig, task: str) -> dict[str, Any]:
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


def validate_for_task(cfg: RawConfig, space: SearchSpace, task: str) -> SearchSpace:
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
