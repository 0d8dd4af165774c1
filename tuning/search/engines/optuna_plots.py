"""Optuna's own plots of a study for the MLflow parent run: PNG (previewed offline), optional HTML."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

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
        axes = getattr(vis, function)(study, **_target(study))
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
        figure = getattr(vis, function)(study, **_target(study))
    figure.write_html(path, include_plotlyjs=True, full_html=True)
    return path


def _target(study: optuna.Study) -> dict[str, object]:
    """selection=pareto: plot the first objective (the metric); the gap has its own plot."""
    if len(study.directions) == 1:
        return {}
    return {"target": lambda t: t.values[0], "target_name": str(study.user_attrs.get("metric", "value"))}
