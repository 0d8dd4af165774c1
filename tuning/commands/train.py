"""`tuning train`: the final model from a study's best.yaml: train, test once, save, register."""

from __future__ import annotations

import logging
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tuning import interrupts
from tuning.commands.support import crash, fail, hydra_flags, run_hydra, run_job, without_hydra
from tuning.config import Settings, compose, conf_dir, group_options, parse, resolved
from tuning.config.space import Hyperparameters
from tuning.errors import ConfigError, Terminated
from tuning.files import check_writable_folder
from tuning.final.best import check_best, read_best
from tuning.payload import Payload, RawConfig
from tuning.tracking.client import check_tracking

log = logging.getLogger("tuning")

USAGE = """\
usage: tuning train study=NAME [OVERRIDES...]
       tuning train best=PATH [OVERRIDES...]

Trains the final model with the best trial's settings from experiments/NAME/best.yaml (or any
best.yaml), evaluates it once on the held-out test split, saves it under <best.yaml's folder>/final/
and registers it in MLflow (alias 'champion'). Any key of best.yaml can be overridden.

examples:
  tuning train study=plants
  tuning train study=plants final.refit=false        # train split + early stopping, no refit
  tuning train study=plants final.epochs=40 tracking=none
  tuning train best=archive/plants/best.yaml paths.root=archive
  tuning train study=plants --cfg job                # print the composed config, train nothing

options (besides best.yaml's own keys):
  final.refit     true: refit on train+validation (default); false: train split, early stopping
  final.epochs    refit epochs; null = as many weight updates as the best trial made (README)
  tracking=none   skip MLflow; tracking.uri=URL picks another store
  paths.root      where study=NAME is looked up (default: experiments)"""

# Keys every final training reads; best.yaml files written before they existed get these.
FINAL_DEFAULTS: dict[str, Any] = {"refit": True, "epochs": None}
# Config groups that may still be switched as a whole on best.yaml (the others are the search's).
SWITCHABLE_GROUPS = ("tracking",)


def check(raw: RawConfig, source: str, *, reach_server: bool = False) -> tuple[Settings, Hyperparameters]:
    """Every check that needs no data; returns the settings and the fixed hyperparameters.

    ``reach_server``: ask a tracking server to answer now (before Hydra writes anything).
    """
    hp = check_best(raw, source)
    settings = parse(raw)
    uri = check_tracking(settings.tracking, settings.paths_root, reach_server=False)
    if uri is not None and "***" in uri:
        raise ConfigError(
            "tracking.uri",
            f"{uri} is redacted in {source} (credentials are never written); give it again: tracking.uri=URL",
        )
    if reach_server:
        check_tracking(settings.tracking, settings.paths_root, reach_server=True)
    return settings, hp


def run(raw: RawConfig, best_path: str | Path) -> Any:
    """Train, report, save and register the final model described by a resolved config."""
    from tuning.final.saved import save_final
    from tuning.model.backend import start_tensorflow
    from tuning.tracking.final import open_final_tracking

    best_path = Path(best_path)
    settings, hp = check(raw, str(best_path))
    tracker = open_final_tracking(settings)  # before training: an unreachable store fails now
    best: Payload = raw["best"]  # the best trial's record, as best.yaml keeps it (checked by check_best)
    # The sweep seeded trial n with seed + n and recorded it as best.seed.
    sweep_seed = int(best["seed"]) - int(best["trial"]) if "seed" in best else settings.seed
    if settings.seed != sweep_seed:
        log.warning(
            f"seed {settings.seed} is not the sweep's ({sweep_seed}): the data and its test split are "
            "drawn anew, so test rows may be rows the search trained or validated on"
        )
    log.info(f"final model of study '{settings.study.name}' from {best_path} (best trial {best['trial']})")
    start_tensorflow(settings.training)
    final = _train(settings, hp, best_path)
    data = final.dataset
    log.info(data.summary())
    if final.refit:
        why = (
            "set by final.epochs"
            if settings.final.epochs
            else f"as many weight updates as the best trial's {best['best_epoch']} epochs on "
            f"{best.get('cv_train_rows') or len(data.y_train)} rows (batch size {hp.batch_size})"
            + (f"; the mean of its {best['cv_folds']} folds" if best.get("cv_folds") else "")
        )
        log.info(
            f"refit on train+validation ({len(data.y_train) + len(data.y_val)} rows) for {final.epochs} epochs: {why}"
        )
    else:
        log.info(f"trained on the train split with early stopping: {final.epochs} epochs")
    log.info(
        "train / validation / test (the test split is used here once, never by the search):\n"
        + final.table.to_string(float_format=lambda v: f"{v:.4f}")
    )
    if final.check is not None:  # one line: within noise, or a warning with the figures and what to do
        (log.warning if final.check.worse else log.info)(final.check.line())
    folder = save_final(final, best_path.parent / "final")
    log.info(f"final model saved in {folder}/ (model.keras, pipeline.json, preprocessing.joblib, meta.json)")
    log.info(f"predict: tuning predict model={folder / 'model.keras'} data.path=NEW_ROWS.csv")
    if tracker is not None:
        tracker.log(final, folder)
        log.info(f"serve: tuning serve study={final.study} (docs/serving.md)")
    return final


def _train(settings: Settings, hp: Hyperparameters, best_path: Path) -> Any:
    """``train_final`` with a checkpoint of the fit beside best.yaml (``training.checkpoints``):
    kept when Ctrl-C or SIGTERM stops the fit (the same command continues it; after kill -9 it
    is simply there), removed once the fit is done or failed, so nothing else is left behind."""
    from tuning.final.refit import train_final

    folder = best_path.parent / "checkpoints" if settings.training.checkpoints else None
    try:
        return train_final(settings, hp, source=str(best_path), checkpoints=folder)
    finally:
        if folder is not None and interrupts.received() is None:
            shutil.rmtree(folder / "final", ignore_errors=True)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def find_best(args: Sequence[str]) -> tuple[Path, list[str]]:
    """The best.yaml named by ``study=NAME`` or ``best=PATH``, and the remaining arguments."""
    picks = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith(("study=", "best="))}
    rest = [a for a in args if not a.startswith(("study=", "best="))]
    root = Path(next((a.split("=", 1)[1] for a in rest if a.startswith("paths.root=")), "experiments"))
    studies = ", ".join(sorted(p.parent.name for p in root.glob("*/best.yaml")))
    listing = f"studies with a best.yaml in {root}/: {studies or 'none (run `tuning sweep` first)'}"
    if len(picks) > 1:
        raise ConfigError("best", "give study=NAME or best=PATH, not both")
    if "best" in picks:
        path = Path(picks["best"])
        path = path / "best.yaml" if path.is_dir() else path
        if not path.is_file():
            raise ConfigError("best", f"no file {path}; {listing}")
        return path, rest
    name = picks.get("study")
    if not name:
        raise ConfigError("study", f"which study? give study=NAME or best=PATH; {listing}")
    path = root / name / "best.yaml"
    if not path.is_file():
        raise ConfigError("study", f"no best.yaml for study '{name}' ({path}); {listing}")
    return path, rest


def overrides_for(best_yaml: Payload, args: Sequence[str]) -> list[str]:
    """Hydra overrides for best.yaml (``best_yaml``: its content, as read): defaults for keys it
    may lack, then the user's.

    ``tracking=none`` / ``tracking=mlflow`` switch the tracking group as in ``tuning sweep``;
    the other groups hold what the search used and are overridden key by key.
    """
    out = [
        f"+final.{k}={_value(v)}"
        for k, v in FINAL_DEFAULTS.items()
        if k not in (best_yaml.get("final") or {})
    ]
    for arg in args:
        match = re.fullmatch(r"(\w+)=(.*)", arg)
        if match and isinstance(best_yaml.get(match[1]), Mapping) and group_options(match[1]):
            group, option = match.groups()
            if group not in SWITCHABLE_GROUPS:
                raise ConfigError(
                    group,
                    f"best.yaml fixes the {group} the search used; override single keys ({group}.KEY=VALUE)",
                )
            if option not in group_options(group):
                raise ConfigError(group, f"'{option}' is not one of: {', '.join(group_options(group))}")
            out += [f"++{group}.{k}={_value(v)}" for k, v in _group_file(group, option).items()]
        else:
            out.append(arg)
    return out


def _group_file(group: str, option: str) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((conf_dir() / group / f"{option}.yaml").read_text()) or {}


def _value(value: Any) -> str:
    """A plain value in Hydra's override syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def main(args: Sequence[str]) -> int:
    """``tuning train study=NAME [overrides...]``: find and check best.yaml, then run Hydra on it."""
    args = list(args)
    if not any(a.startswith(("study=", "best=")) for a in args) and {"-h", "--help"} & set(args):
        print(USAGE)
        return 0
    try:
        best_path, rest = find_best(args)
        # The model, its run folder and logs go beside best.yaml: refuse now if they cannot.
        check_writable_folder(best_path.parent / "final", "best" if "best=" in " ".join(args) else "study")
        raw = read_best(best_path)
        # Hydra's flags stay where they are (``--cfg job``); they are no overrides of ours.
        args = [*_hydra_settings(best_path), *overrides_for(raw, rest)]
        cfg = None
        if not hydra_flags(rest):
            cfg = compose(best_path.stem, args, best_path.parent.resolve(), with_hydra=True)
            given = [a for a in rest if not a.startswith("-")]
            check(
                resolved(without_hydra(cfg)),
                f"{best_path} with {' '.join(given)}" if given else str(best_path),
                reach_server=True,
            )
    except ConfigError as err:
        fail(err)

    def job(cfg: DictConfig) -> None:
        try:
            with interrupts.handled():  # SIGTERM -> Terminated, after the epoch's checkpoint is whole
                run(resolved(cfg), best_path)
        except ConfigError as err:
            fail(err)
        except Terminated:
            print("\nterminated (SIGTERM): run the same command to continue the final fit", file=sys.stderr)
            sys.exit(143)
        except KeyboardInterrupt:
            print(
                "\ninterrupted: final/ holds a new model only if 'final model saved' was logged",
                file=sys.stderr,
            )
            sys.exit(130)
        except Exception as err:  # reported, not hidden: one redacted line, the traceback in train.log
            crash(err, "tuning train")

    try:
        if cfg is None:
            run_hydra(job, best_path.parent.resolve(), best_path.stem, args)
        else:
            run_job(cfg, job)
    except KeyboardInterrupt:  # while the run folder and its log are set up, before job runs
        print("\ninterrupted before training started: final/ is as it was", file=sys.stderr)
        sys.exit(130)
    return 0


def _hydra_settings(best_path: Path) -> list[str]:
    """Hydra's run folder, job name and log format for a final training beside ``best_path``."""
    return [
        "hydra.run.dir=" + _value(f"{best_path.parent / 'final' / 'runs'}/${{now:%Y-%m-%d_%H-%M-%S}}"),
        "hydra.job.name=train",
        "hydra.job.chdir=false",
        "hydra.job_logging.formatters.simple.format='[%(asctime)s] %(message)s'",
        "+hydra.job_logging.formatters.simple.datefmt='%H:%M:%S'",
    ]
