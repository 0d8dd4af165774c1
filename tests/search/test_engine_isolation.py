"""Only tuning/search/engines/ may use optuna or keras_tuner: everything else imports without them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tuning

PACKAGE = Path(tuning.__file__).parent
ENGINES = PACKAGE / "search" / "engines"
ENGINE_IMPORT = re.compile(r"^\s*(import|from)\s+(optuna|keras_tuner|optuna_integration)\b", re.MULTILINE)


def test_every_module_outside_the_engines_imports_without_optuna_or_keras_tuner():
    code = (
        "import sys, importlib, pkgutil\n"
        "for name in ('optuna', 'optuna_integration', 'keras_tuner'):\n"
        "    sys.modules[name] = None  # import of it raises ImportError\n"
        "import tuning\n"
        "names = [m.name for m in pkgutil.walk_packages(tuning.__path__, 'tuning.')\n"
        "         if m.name != 'tuning.__main__' and (not m.name.startswith('tuning.search.engines.')\n"
        "         or m.name == 'tuning.search.engines.base')]\n"
        # The KerasTuner engine's front module checks options and reads its study without it too.
        "names += ['tuning.search.engines.keras_tuner', 'tuning.search.engines.keras_tuner_space']\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 40, "the walk found the package's modules"


def test_no_file_outside_the_engines_imports_optuna_or_keras_tuner():
    offenders = [
        f"{path.relative_to(PACKAGE)}: {match.group(0).strip()}"
        for path in PACKAGE.rglob("*.py")
        if ENGINES not in path.parents
        for match in ENGINE_IMPORT.finditer(path.read_text())
    ]
    assert offenders == []
