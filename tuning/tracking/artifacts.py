"""The sweep's artifacts as files: trials table (CSV), Optuna plots (PNG, optional HTML), learning curves (PNG), config."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tuning.final.best import SECRET_KEYS, write_yaml
from tuning.redaction import redact

log = logging.getLogger("tuning")

# name of the file -> Optuna plotting function (in optuna.visualization)
PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
    "slice": "plot_slice",
}
# Each plot needs this many complete trials (importances compare trials, so at least two).
MIN_COMPLETE = {"param_importances": 2}


def write_config(settings: Mapping[str, Any], path: Path) -> Path:
    """The composed config, with credentials in storage and tracking URLs redacted."""
    out = dict(settings)
    for section, key in SECRET_KEYS:
        if isinstance(out.get(section), Mapping) and out[section].get(key):
            out[section] = {**out[section], key: redact(out[section][key])}
    return write_yaml(path, out)


def write_plots(study: optuna.Study, folder: Path, plotlyjs: str = "none") -> list[Path]:
    """Optuna's plots as PNG (MLflow previews them, no internet needed), and as self-contained
    HTML with ``plotlyjs="embed"``; a plot that cannot be drawn yet is skipped with a log line."""
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if complete == 0:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, function in PLOTS.items():
        if complete < MIN_COMPLETE.get(name, 1):
            log.info(f"MLflow: {name} plot skipped: needs {MIN_COMPLETE[name]} complete trials")
            continue
        try:
            written.append(_png(study, function, folder / f"{name}.png"))
            if plotlyjs == "embed":
                written.append(_html(study, function, folder / f"{name}.html"))
        # Optuna raises ValueError (and its own errors) when a plot has nothing to draw, e.g.
        # importances when every sampled value is the same: the plot is skipped, not the sweep.
        except (ValueError, RuntimeError, optuna.exceptions.OptunaError) as err:
            log.info(f"MLflow: {name} plot skipped: {str(err).splitlines()[0] if str(err) else err!r}")
    return written


def _png(study: optuna.Study, function: str, path: Path) -> Path:
    """Optuna's matplotlib version of a plot, saved without a display."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; must precede pyplot's import
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis

    with warnings.catch_warnings():  # "experimental", "few trials per regime": expected
        warnings.simplefilter("ignore")
        axes = getattr(vis, function)(study)
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    figure = first.get_figure()
    try:
        figure.set_size_inches(max(figure.get_size_inches()[0], 8), max(figure.get_size_inches()[1], 5))
        figure.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)  # pyplot keeps every figure until closed: memory over a long sweep
    return path


def _html(study: optuna.Study, function: str, path: Path) -> Path:
    import optuna.visualization as vis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure = getattr(vis, function)(study)
    figure.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def write_learning_curves(
    curves: Sequence[tuple[str, Mapping[str, Sequence[float]], int | None]], path: Path, metric: str = "loss"
) -> Path | None:
    """Train vs validation ``metric`` per epoch, one panel per trial, the gap between them shaded.

    Args:
        curves: ``(title, history, best_epoch)`` per trial; ``history`` holds ``train`` and
            ``validation`` lists, ``best_epoch`` is 1-based (marked with a dashed line).
        metric: the name on the y axis (the study's ranking metric without ``val_``).
    """
    curves = [c for c in curves if c[1].get("train") and c[1].get("validation")]
    if not curves:
        return None
    # The object API with the Agg canvas: no pyplot state, no display needed, safe off the main thread.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    cols = min(len(curves), 2)
    rows = math.ceil(len(curves) / cols)
    figure = Figure(figsize=(5.5 * cols, 3.6 * rows))
    FigureCanvasAgg(figure)
    # A fixed grid: an automatic layout engine would double the drawing time.
    grid = {"left": 0.6 / (5.5 * cols), "right": 1 - 0.15 / (5.5 * cols), "bottom": 0.5 / (3.6 * rows)}
    grid.update(top=1 - 0.3 / (3.6 * rows), wspace=0.25, hspace=0.45)
    axes = figure.subplots(rows, cols, squeeze=False, gridspec_kw=grid).ravel()
    for ax, (title, history, best) in zip(axes, curves, strict=False):
        train, val = list(history["train"]), list(history["validation"])
        epochs = list(range(1, len(train) + 1))
        ax.plot(epochs, train, marker=".", label=f"train {metric}")
        ax.plot(epochs[: len(val)], val, marker=".", label=f"validation {metric}")
        n = min(len(train), len(val))
        over = [v >= t for t, v in zip(train[:n], val[:n], strict=True)]
        ax.fill_between(
            epochs[:n], train[:n], val[:n], where=over, interpolate=True, alpha=0.25, color="tab:red",
            label="gap: validation above train",
        )  # fmt: skip
        ax.fill_between(
            epochs[:n], train[:n], val[:n], where=[not o for o in over], interpolate=True, alpha=0.15,
            color="tab:green", label="validation below train",
        )  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best:
            ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8, loc="upper right")
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
