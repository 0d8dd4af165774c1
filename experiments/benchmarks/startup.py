"""Start-up: wall time of commands that must answer at once, and what each one imports.

Each command runs as a user runs it (the ``tuning`` console script, in a fresh process),
5 times, interleaved; the median wall time is compared with the 1 s target. A second run of
each command through a small check script lists which heavy libraries it imported:
TensorFlow must be imported only when training starts.

    python experiments/benchmarks/startup.py --quick   # ~1 min
    python experiments/benchmarks/startup.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import common

TARGET_S = 1.0
HEAVY = ("tensorflow", "keras", "mlflow", "optuna", "sklearn", "pandas", "matplotlib", "plotly")

# Runs the CLI in-process, then reports which heavy libraries ended up in sys.modules.
CHECK = """
import json, sys
from tuning.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = {heavy!r}
print("IMPORTED " + json.dumps([m for m in heavy if m in sys.modules]), file=sys.stderr)
"""


def tuning_command() -> list[str]:
    """The console script next to this interpreter (as installed), else ``python -m tuning``."""
    script = Path(sys.executable).with_name("tuning")
    if script.exists():
        return [str(script)]
    found = shutil.which("tuning")
    return [found] if found else [sys.executable, "-m", "tuning"]


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    return time.perf_counter() - start, proc


def imported(args: list[str], cwd: Path) -> tuple[list[str], list[tuple[float, str]]]:
    """The heavy libraries the command imported, and its slowest top-level imports (``-X importtime``)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", CHECK.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    heavy, slowest = None, []
    for line in proc.stderr.splitlines():
        if line.startswith("IMPORTED "):
            heavy = json.loads(line.removeprefix("IMPORTED "))
        elif line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            if cumulative.strip().isdigit() and not name.startswith("  "):  # a top-level import
                slowest.append((int(cumulative) / 1e6, name.strip()))
    if heavy is None:
        raise RuntimeError(f"check of {args} failed:\n{proc.stderr[-2000:]}")
    return heavy, sorted(slowest, reverse=True)[:3]


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    started = time.perf_counter()
    repeats = 5
    common.print_header("start-up: commands that must answer in under 1 s", args)
    tuning = tuning_command()
    with common.scratch_dir() as tmp:
        print("preparing a study for `tuning report` (one 1-epoch trial)...", flush=True)
        sweep = [*tuning, "sweep", "study.n_trials=1", "training.max_epochs=1", "tracking=none"]
        prep = subprocess.run(sweep, capture_output=True, text=True, cwd=tmp)
        if prep.returncode != 0:
            raise SystemExit(f"could not prepare the study:\n{prep.stderr[-2000:]}")
        cases = {
            "tuning --help": ["--help"],
            "tuning report": ["report", "plants"],
            "config error (bad value)": ["sweep", "study.n_trials=0"],
            "config error (unknown group option)": ["sweep", "sampler=nope"],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        codes: dict[str, int] = {}
        for _ in range(repeats):
            for name, case in cases.items():
                seconds, proc = timed([*tuning, *case], tmp)
                times[name].append(seconds)
                codes[name] = proc.returncode
        rows = []
        for name, case in cases.items():
            heavy, slowest = imported(case, tmp)
            med = common.median(times[name])
            rows.append(
                [
                    name,
                    med,
                    "yes" if med < TARGET_S else "NO",
                    codes[name],
                    "tensorflow" in heavy,
                    ", ".join(heavy) or "-",
                    ", ".join(f"{n} {t:.2f}" for t, n in slowest),
                ]
            )
    print(f"\nmedian of {repeats} runs each (command: {' '.join(tuning)} ...):")
    print(
        common.table(
            rows,
            [
                "command",
                "wall s",
                f"< {TARGET_S:g} s",
                "exit",
                "tensorflow",
                "heavy imports",
                "slowest imports (s)",
            ],
        )
    )
    common.print_footer(started)


if __name__ == "__main__":
    main()
