"""model=custom: load the user's builder named by ``model.build`` and call it the way it was written.

A builder is a function ``build(hp)`` (KerasTuner's style) or ``build(hp, dataset)``, or a
KerasTuner ``HyperModel`` subclass (or instance) whose ``build(hp)`` is used. Recognized by shape
(duck typing), so keras_tuner is never imported here. No TensorFlow import either: the config
check only looks the module up; it is imported (with whatever it imports) when the data is loaded.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuning.config.model import on_path, split_path
from tuning.errors import ConfigError

if TYPE_CHECKING:
    from tuning.data import Dataset


@dataclass(frozen=True)
class DatasetInfo:
    """What a builder may know about the data (read-only): shapes, task and classes.

    Features arrive as one float32 vector per row (``input_shape == (n_features,)``), already
    preprocessed; a regression target is standardized (``target_units``: its ``(mean, scale)``).
    """

    name: str
    input_shape: tuple[int, ...]
    n_features: int
    task: str
    n_classes: int
    class_names: tuple[str, ...] | None
    target_units: tuple[float, float]

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetInfo:
        return cls(
            name=dataset.name,
            input_shape=tuple(int(d) for d in dataset.x_train.shape[1:]),
            n_features=dataset.n_features,
            task=dataset.task,
            n_classes=dataset.n_classes,
            class_names=tuple(dataset.class_names) if dataset.class_names else None,
            target_units=dataset.target_units,
        )


@dataclass(frozen=True)
class Builder:
    """A loaded builder: ``__call__(hp, info)`` calls it as it was written."""

    path: str
    build: Callable[..., Any]
    takes_dataset: bool

    def __call__(self, hp: Any, info: DatasetInfo) -> Any:
        return self.build(hp, info) if self.takes_dataset else self.build(hp)


_loaded: dict[str, Builder] = {}


def load_builder(path: str) -> Builder:
    """Import the builder named by ``path`` (once per process) and check its shape.

    Raises:
        ConfigError: the module cannot be imported, has no such name, or it is not a builder
            (a ``HyperModel`` overriding ``fit`` is refused: the trial runner fits the model).
    """
    if path in _loaded:
        return _loaded[path]
    module_name, attr = split_path(path)
    on_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError("model.build", f"{path}: cannot import '{module_name}': {err}") from None
    except Exception as err:  # the user's module failed while importing: bad input, one line
        raise ConfigError(
            "model.build", f"{path}: importing '{module_name}' raised {type(err).__name__}: {err}"
        ) from None
    if not hasattr(module, attr):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ConfigError(
            "model.build",
            f"{path}: module '{module_name}' has no '{attr}'; it defines: {', '.join(public) or 'nothing callable'}",
        )
    builder = _as_builder(path, getattr(module, attr))
    _loaded[path] = builder
    return builder


def _as_builder(path: str, target: Any) -> Builder:
    if inspect.isclass(target):  # a HyperModel subclass: KerasTuner makes one per search
        if not callable(getattr(target, "build", None)):
            raise ConfigError("model.build", f"{path} is a class without a build(hp) method")
        _refuse_fit(path, target)
        try:
            target = target()
        except Exception as err:  # its constructor needs arguments or fails: bad input
            raise ConfigError(
                "model.build", f"{path}() raised {type(err).__name__}: {err}; it must take no arguments"
            ) from None
    signature_of = target
    if not inspect.isroutine(target) and callable(getattr(target, "build", None)):
        _refuse_fit(path, type(target))  # a HyperModel instance
        # KerasTuner's HyperModel wraps `build` in `(hp, *args)`: read the class's own method.
        method = getattr(type(target), "build", None)
        signature_of = (lambda *a: None) if method is None else _unbound(method)
        target = target.build
    if not callable(target):
        raise ConfigError("model.build", f"{path} is a {type(target).__name__}, not a function or class")
    try:
        params = list(inspect.signature(signature_of).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: call it KerasTuner's way
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if params and not positional and not varargs:
        raise ConfigError(
            "model.build", f"{path} takes no hp argument; write build(hp) or build(hp, dataset)"
        )
    return Builder(path, target, takes_dataset=len(positional) >= 2 or varargs)


def _unbound(method: Callable[..., Any]) -> Callable[..., Any]:
    """A class's method without its ``self``: ``build(self, hp)`` reads as ``build(hp)``."""
    params = list(inspect.signature(method).parameters.values())[1:]
    stub = lambda *a, **k: None  # noqa: E731
    stub.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return stub


def _refuse_fit(path: str, cls: type) -> None:
    """A HyperModel whose ``fit(hp, model, ...)`` is its own: refused, not half honoured.

    Our trial runner owns the fit (early stopping with the best weights restored, pruning, the
    NaN guard, the gaps): a user ``fit`` would bypass all of it, and with it what makes trials
    comparable. KerasTuner's own ``HyperModel.fit`` (plain ``model.fit``) is fine.
    """
    for klass in cls.__mro__:
        if "fit" in vars(klass):
            if klass.__module__.split(".")[0] == "keras_tuner":
                return
            raise ConfigError(
                "model.build",
                f"{path} overrides HyperModel.fit(hp, model, ...), which tuning does not call: it fits "
                "the model itself (early stopping, pruning); set batch_size/epochs in search_space "
                "and anything else in build()",
            )
