"""The sweep's parent-run artifacts: trials table, config, the engine's plots (or ours), selection
plot and the learning curves of the best trials, read back from their child runs."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuning.payload import RawConfig
from tuning.results.table import Table, trials_table, write_csv
from tuning.study.summary import StudySummary
from tuning.tracking.artifacts import (
    write_config,
    write_history_plot,
    write_learning_curves,
    write_selection_plot,
)
from tuning.tracking.content import EPOCH

if TYPE_CHECKING:
    from tuning.config.schema import TrackingConfig


def log_sweep_artifacts(
    client: Any,
    run_id: str,
    study: StudySummary,
    config: RawConfig,
    *,
    tracking: TrackingConfig,
    children: Mapping[int, str],
    plots: Callable[[Path, str], list[Path]] | None,
) -> None:
    """Draw and write every artifact into a temporary folder, then log it to the parent run.
    ``config``: the config as composed (written as config.yaml, credentials redacted);
    ``plots``: the engine's own plots; without any, an optimization history drawn from records."""
    with tempfile.TemporaryDirectory(prefix="tuning-mlflow-") as tmp:
        folder = Path(tmp)
        table = trials_table(study)
        write_csv(table, folder / "trials.csv")
        write_config(config, folder / "config.yaml")
        if not (plots and plots(folder / "plots", tracking.plotlyjs)):
            write_history_plot(study, folder / "plots" / "optimization_history.png")
        write_selection_plot(study, folder / "plots" / "selection.png")  # score vs gap, the pick
        top = tracking.learning_curves
        if top:
            metric = table.columns[2].removeprefix("val_")
            write_learning_curves(
                _curves(client, table, top, children), folder / "learning_curves.png", metric
            )
        client.log_artifacts(run_id, tmp)


def _curves(
    client: Any, table: Table, top: int, children: Mapping[int, str]
) -> list[tuple[str, dict[str, list[float]], int | None]]:
    """The ranking metric per epoch, on train and validation, of the best ``top`` complete
    trials, read back from MLflow (``loss`` would differ in kind between trials that train
    with different losses)."""
    metric = table.columns[2]
    base = metric.removeprefix("val_")
    curves = []
    for row in [r for r in table.records() if r["state"] == "COMPLETE"][:top]:
        run_id = children.get(int(row["trial"]))
        if run_id is None:
            continue
        history = {
            "train": _history(client, run_id, f"{EPOCH}{base}"),
            "validation": _history(client, run_id, f"{EPOCH}val_{base}"),
        }
        title = f"trial {row['trial']}: {metric} {row[metric]:.4g}"
        if row.get(f"gap_{base}") is not None:
            title += f", gap_{base} {row[f'gap_{base}']:.3g} at the best weights"
        best = row.get("best_epoch")
        curves.append((title, history, None if best is None else int(best)))
    return curves


def _history(client: Any, run_id: str, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]
