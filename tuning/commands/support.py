"""Helpers shared by the command entry points: one-line errors, running a composed job or Hydra."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from omegaconf import DictConfig, OmegaConf

from tuning.errors import ConfigError


def fail(err: ConfigError) -> NoReturn:
    """Print ``error: key: message`` on one line and exit 2."""
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)


def crash(err: BaseException, command: str) -> NoReturn:
    """:func:`report_crash`, then exit 1."""
    report_crash(err, command)
    sys.exit(1)


def report_crash(err: BaseException, command: str) -> None:
    """Report an error nobody caught on purpose, without the credentials Hydra would print.

    Left to Hydra, an uncaught exception is printed with the job's command-line overrides
    (``Error executing job with overrides: [... 'study.storage=postgresql://user:password@...']``).
    Instead: the full traceback, credentials redacted, goes to the run's log file (Hydra's file
    handler, e.g. ``runs/<time>/sweep.log``), and stderr gets one redacted line naming it. The
    command then exits 1: a failure, not bad input.
    """
    from tuning.redaction import first_line, redact_text

    text = redact_text("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    record = logging.LogRecord("tuning", logging.ERROR, __file__, 0, "%s", (text.rstrip(),), None)
    for handler in files:
        handler.handle(record)
    where = f"; the traceback is in {files[0].baseFilename}" if files else ""
    if not files:  # no log file (Hydra's logging turned off): the traceback goes to stderr instead
        sys.stderr.write(text)
    root, seen = err, {id(err)}
    while (inner := root.__cause__ or root.__context__) is not None and id(inner) not in seen:
        root = inner
        seen.add(id(inner))
    # Wrappers often say less than what they wrap (Optuna's StorageInternalError over a lost
    # connection): name the first cause too.
    cause = f" (cause: {type(root).__name__}: {first_line(root)})" if root is not err else ""
    print(
        f"error: {command} stopped by an unexpected {type(err).__name__}: {first_line(err)}{cause}{where}",
        file=sys.stderr,
    )


def hydra_flags(args: Sequence[str]) -> bool:
    """Whether ``args`` hold a flag of Hydra's (``--cfg job``, ``-m``, ``--hydra-help``...): an
    override never starts with ``-`` in Hydra's grammar, so no list of flags is kept here."""
    return any(arg.startswith("-") for arg in args)


def run_job(cfg: DictConfig, job: Callable[[DictConfig], None]) -> None:
    """Run ``job`` on a config composed ``with_hydra`` (:func:`tuning.config.compose`), as Hydra
    runs one: in ``hydra.run.dir`` (made now: nothing is written before), ``HydraConfig`` set,
    ``hydra.job_logging``'s format to ``<hydra.job.name>.log`` there, and the config saved
    without credentials (:func:`save_run_config`)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from tuning.logs import job_logging

    HydraConfig.instance().set_config(cfg)  # before reading hydra.run.dir: it may use ${hydra:...}
    run_dir = Path(str(cfg.hydra.run.dir)).resolve()
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    task = without_hydra(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    logging_cfg = OmegaConf.to_container(cfg.hydra.job_logging, resolve=True)
    assert isinstance(logging_cfg, dict)
    with job_logging(run_dir / f"{cfg.hydra.job.name}.log", logging_cfg, bool(task.get("verbose"))):
        save_run_config(task)
        job(task)


def without_hydra(cfg: DictConfig) -> DictConfig:
    """``cfg`` less its ``hydra`` node: the job's own config."""
    from omegaconf import open_dict

    task = cfg.copy()
    with open_dict(task):
        task.pop("hydra", None)
    return task


def run_hydra(
    job: Callable[[DictConfig], None], config_dir: Path, config_name: str, args: Sequence[str]
) -> None:
    """Hand ``args`` to Hydra's own command line, for its flags (``--cfg``, ``-m``, ``--info``...).

    What ``@hydra.main`` does with ``sys.argv`` (hydra/main.py), with ``args`` instead; Hydra
    composes, makes the run folders and configures logging. ``hydra.output_subdir=null``: Hydra
    saves no config of its own (credentials and all); each job saves one, redacted.
    """
    from hydra import version
    from hydra._internal.utils import _run_hydra, get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    from tuning.logs import Redacted, quiet_terminal, root_logging_restored

    def task(cfg: DictConfig) -> None:
        quiet_terminal(bool(cfg.get("verbose", False)))
        save_run_config(cfg)
        redact_multirun_file()
        job(cfg)

    version.setbase("1.3")
    launcher = logging.getLogger("hydra._internal.core_plugins.basic_launcher")  # "#0 : overrides"
    if not any(isinstance(f, Redacted) for f in launcher.filters):
        launcher.addFilter(Redacted())
    parser = get_args_parser()
    GlobalHydra.instance().clear()
    try:
        with root_logging_restored():
            _run_hydra(
                # Intermixed: overrides may stand on both sides of a flag (`study=x --cfg job k=v`).
                args=parser.parse_intermixed_args([*args, "hydra.output_subdir=null"]),
                args_parser=parser,
                task_function=task,
                config_path=str(config_dir),
                config_name=config_name,
            )
    finally:
        GlobalHydra.instance().clear()


def redact_multirun_file() -> None:
    """With ``-m``, Hydra's sweeper saves the whole config to ``<sweep dir>/multirun.yaml``
    before the first job (basic_sweeper.py), credentials and all, and offers no option against
    it: each job rewrites the file with them hidden, before it does anything else."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from tuning.files import atomic_text
    from tuning.redaction import redact_text

    hydra_cfg = HydraConfig.get()
    path = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    if hydra_cfg.mode != RunMode.MULTIRUN or not path.is_file():
        return
    text = path.read_text()
    hidden = redact_text(text)
    if hidden != text:
        with atomic_text(path) as out:
            out.write(hidden)


def save_run_config(task: DictConfig) -> None:
    """Write the job's config, Hydra's and the overrides to ``<run folder>/.hydra/``, credentials
    hidden (:func:`tuning.redaction.redact`): what Hydra saves there, minus the passwords."""
    from hydra.core.hydra_config import HydraConfig

    from tuning.files import atomic_text
    from tuning.redaction import redact_text

    hydra_cfg = HydraConfig.get()
    folder = Path(hydra_cfg.runtime.output_dir) / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "config.yaml": task,
        "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
        "overrides.yaml": hydra_cfg.overrides.task,
    }
    for name, node in files.items():
        text = OmegaConf.to_yaml(node)
        with atomic_text(folder / name) as out:
            out.write(redact_text(text))
