"""The type checker passes on the package: every engine and observer is checked against its interface."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_reports_no_error_in_the_package():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(ROOT / "tuning"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout


PACKAGE = ROOT / "tuning"
CONFIG = PACKAGE / "config"


def sources(outside: Path | None = None) -> dict[str, str]:
    return {
        str(p.relative_to(ROOT)): p.read_text()
        for p in sorted(PACKAGE.rglob("*.py"))
        if outside is None or outside not in p.parents
    }


def test_untyped_mappings_are_kept_to_the_config_boundary_and_records():
    # `tuning.payload` names the two kinds kept on purpose (the config as composed, JSON records);
    # anywhere else a `Mapping[str, Any]` is a setting or a record travelling untyped by accident.
    found = {path: text.count("Mapping[str, Any]") for path, text in sources().items()}
    found = {path: n for path, n in found.items() if n}
    assert sum(found.values()) <= 15, found


def test_no_setting_is_read_by_string_key_outside_the_config_package():
    # `settings["study"]["metric"]` outside tuning/config: the typed Settings (or its part) says
    # the same, with its default and its check; the raw config is parsed once, at the edge.
    pattern = re.compile(r"\b(settings|training|tracking)(\[\s*[\"']|\.get\(\s*[\"'])")
    reads = [
        f"{path}:{number}: {line.strip()}"
        for path, text in sources(outside=CONFIG).items()
        for number, line in enumerate(text.splitlines(), 1)
        if pattern.search(line)
    ]
    assert reads == []
