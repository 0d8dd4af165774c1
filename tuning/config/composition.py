"""Compose configs with Hydra's compose API; its errors become one-line ConfigErrors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from tuning.errors import ConfigError


def conf_dir() -> Path:
    """``conf/`` shipped inside the wheel (``tuning/conf``), else the checkout's top-level one."""
    package = Path(__file__).resolve().parents[1]  # tuning/
    packaged = package / "conf"
    return packaged if packaged.is_dir() else package.parent / "conf"


def group_options(group: str, root: Path | None = None) -> list[str]:
    """The names a config group offers (``sampler`` -> ``cmaes, gp, qmc, random, tpe``)."""
    folder = (root or conf_dir()) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def compose(
    config_name: str,
    overrides: Sequence[str],
    config_dir: Path | None = None,
    *,
    with_hydra: bool = False,
) -> DictConfig:
    """Compose ``config_name`` with ``overrides`` once; ``with_hydra`` keeps the ``hydra`` node
    (run folder, job name, logging) for :func:`tuning.commands.support.run_job`.

    Raises:
        ConfigError: naming the group or key at fault (:func:`hydra_error`).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir or conf_dir()), version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=with_hydra)
    except Exception as err:
        raise hydra_error(err) from None
    finally:
        GlobalHydra.instance().clear()


def hydra_error(err: Exception) -> ConfigError:
    """One line from what Hydra's exceptions carry: the missing group option and the group's
    options, the OmegaConf key an override missed, or the override that does not parse."""
    from hydra.errors import MissingConfigException, OverrideParseException

    if isinstance(err, MissingConfigException) and err.missing_cfg_file and "/" in err.missing_cfg_file:
        group, name = err.missing_cfg_file.rsplit("/", 1)
        options = ", ".join(err.options or []) or "none"
        return ConfigError(group.replace("/", "."), f"'{name}' is not one of: {options}")
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key = str(cause.full_key)
        if isinstance(cause, (KeyError, AttributeError)):  # ConfigKeyError, ConfigAttributeError
            return ConfigError(
                key, f"is not a config group or key of this config; to add it as a new key: +{key}=VALUE"
            )
        return ConfigError(key, str(getattr(cause, "msg", cause)).splitlines()[0])
    if isinstance(err, OverrideParseException):
        key = err.override.split("=", 1)[0].lstrip("+~")
        return ConfigError(
            key,
            f"cannot parse the value ({err.message.splitlines()[0]}); quote a value holding '=', "
            f"""spaces or brackets: '{key}="..."'""",
        )
    first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
    return ConfigError("", f"invalid configuration: {first}")
