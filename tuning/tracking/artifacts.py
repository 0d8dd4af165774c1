"""The sweep's artifacts as files: learning curves and an optimization history (PNG), the config."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuning.final.best import SECRET_KEYS, write_yaml
from tuning.payload import RawConfig
from tuning.redaction import redact
from tuning.study.summary import StudySummary

log = logging.getLogger("tuning")


def write_config(config: RawConfig, path: Path) -> Path:
    """The composed config, with credentials in storage and tracking URLs redacted."""
    out = dict(config)
    for section, key in SECRET_KEYS:
        if isinstance(out.get(section), Mapping) and out[section].get(key):
            out[section] = {**out[section], key: redact(out[section][key])}
    return write_yaml(path, out)


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


def write_history_plot(summary: StudySummary, path: Path) -> Path | None:
    """Each complete trial's value in the order the trials were numbered, and the best so far:
    the optimization history for an engine that draws no plots of its own."""
    complete = [t for t in summary.trials if t.state == "COMPLETE" and t.value is not None]
    if not complete:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    numbers = [t.number for t in complete]
    values = [float(t.value or 0.0) for t in complete]
    pick = max if summary.direction == "maximize" else min
    best = [pick(values[: i + 1]) for i in range(len(values))]
    ax.plot(numbers, values, "o", alpha=0.6, label=summary.metric)
    ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(summary.metric)
    ax.set_title(f"Optimization history of '{summary.name}' ({summary.engine})", fontsize=10)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def write_selection_plot(study: StudySummary, path: Path) -> Path | None:
    """Validation score vs overfitting gap of the complete trials (selection=constrained or
    pareto): the Pareto front joined, the gap limit dashed, the picked trial circled."""
    from tuning.study.selection import gap_key, gap_of, pareto_ranks, selection_of

    selection = selection_of(study)
    points: list[tuple[Any, float]] = []
    for t in study.trials:
        gap = gap_of(t, study.metric) if t.state == "COMPLETE" and t.value is not None else None
        if gap is not None:
            points.append((t, gap))
    if selection.mode == "best" or not points:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4.5))
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.scatter([g for _, g in points], [t.value for t, _ in points], color="0.6", label="trials")
    ranks = pareto_ranks(study)
    front = sorted((g, float(t.value)) for t, g in points if ranks.get(t.number) == 0)
    if front:
        ax.plot([g for g, _ in front], [v for _, v in front], "o-", color="C0", label="Pareto front")
    if selection.max_gap is not None:
        ax.axvline(selection.max_gap, linestyle="--", color="C3", label=f"max_gap {selection.max_gap:g}")
    best = study.best()
    best_gap = gap_of(best, study.metric) if best is not None else None
    if best is not None and best.value is not None and best_gap is not None:
        ax.scatter(
            [best_gap], [best.value], s=200, facecolors="none", edgecolors="C1",
            linewidths=2, label=f"picked: trial {best.number}",
        )  # fmt: skip
    ax.set_xlabel(f"{gap_key(study.metric)} (overfitting gap, > 0: overfits)")
    ax.set_ylabel(study.metric)
    ax.set_title(f"{study.name}: selection={selection.mode}")
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
