"""Open the MLflow UI on a finished sweep in a real browser and check what a user sees there.

    python experiments/ui/mlflow_ui_check.py            # screenshots into experiments/ui/screenshots/

Runs a tiny sweep (plants, 6 trials, tracking on) in a temporary folder, starts `mlflow ui` on
that store (loopback only), then, in headless Chromium through Playwright:

1. the link the sweep prints opens the experiment's runs table (not MLflow's GenAI overview);
2. the best trial is marked in the runs table, by name;
3. pruned and failed trials are told apart there by name and status;
4. a trial's headline `val_log_loss` is the value at its restored best weights, listed before
   its per-epoch series (`while_training/...`);
5. a plot artifact renders as an image (no CDN needed);
6. the first screen of the experiment (the runs table as it opens, nothing clicked) shows the
   best trial's name and its gap, inside the viewport;
7. the best trial's link there opens that trial's run.

Needs Debian's Chromium (`apt-get install -y chromium`) and `pip install playwright`
(`playwright install` cannot download browsers here; the system Chromium is used). Exits 1 and
says which check failed; screenshots are written either way.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHOTS = HERE / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SWEEP = [
    "data.n_samples=400", "training.max_epochs=4", "study.n_trials=6", "seed=1",
    "pruner=median", "pruner.n_startup_trials=2", "pruner.n_warmup_steps=1",
    # one trial that diverges: a FAILED run to tell apart
    "~search_space.learning_rate", "+search_space.learning_rate={type:categorical,choices:[0.003,0.03,1e9]}",
]  # fmt: skip


CHECKS = 7


def first_screen(page: Any, best: Any, shot: Path) -> list[str]:
    """Check 6: the runs table as it opens shows the best trial's name and gap in the viewport
    (the experiment's description leads with them); the screenshot is what a user sees first."""
    page.wait_for_selector("button[data-component-id*='runnamecellrenderer']", timeout=60_000)
    page.screenshot(path=shot)
    gap = f"gap_log_loss {best.data.metrics['gap_log_loss']:+.4f}"
    viewport = page.viewport_size or {"width": 0, "height": 0}
    missing = []
    for text in (best.info.run_name, gap):
        box = page.get_by_text(text, exact=False).first.bounding_box()
        inside = box is not None and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]
        if not inside or box["x"] + box["width"] > viewport["width"]:
            missing.append(f"6: {text!r} is not on the first screen (box {box})")
    return missing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, seconds: float = 120) -> None:
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"MLflow UI did not answer at {url} within {seconds} s")


def main() -> int:
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ui-check-"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "tuning", "sweep", *SWEEP], cwd=work, capture_output=True, text=True, env=env
    )
    printed = done.stdout + done.stderr
    link = re.search(r"open (http://127\.0\.0\.1:5000/\S+?)\)", printed)
    if link is None:
        raise SystemExit(f"the sweep printed no MLflow link:\n{printed[-3000:]}")
    store = f"sqlite:///{work}/experiments/mlflow.db"
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("plants")
    runs = client.search_runs([experiment.experiment_id])
    trials = {r.data.tags.get("tuning.trial"): r for r in runs if r.data.tags.get("tuning.role") == "trial"}
    parent = next(r for r in runs if r.data.tags.get("tuning.role") == "sweep")
    best = parent.data.tags["tuning.best_trial"]

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", store,
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    failures: list[str] = []
    try:
        wait_for(f"http://127.0.0.1:{port}/health")
        url = link.group(1).replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            page.wait_for_selector("text=sweep", timeout=90_000)
            run = trials[best]
            failures += first_screen(page, run, SHOTS / "first_screen.png")
            # Trials are nested under the sweep run: expand it as a user would.
            page.locator("button[data-component-id*='runnamecellrenderer']").first.click()
            page.wait_for_selector("text=trial-", timeout=60_000)
            page.screenshot(path=SHOTS / "runs.png")
            text = page.inner_text("body")
            if "Traces" in text and "trial-" not in text:
                failures.append("1: the printed link opened the GenAI overview, not the runs table")
            best_name = trials[best].info.run_name
            if "best" not in best_name or best_name not in text:
                failures.append(f"2: the best trial ({best}) is not marked in the runs table: {best_name!r}")
            states = {r.data.tags.get("tuning.state"): r.info.run_name for r in trials.values()}
            for state in ("PRUNED", "FAIL"):
                if state in states and states[state] not in text:
                    failures.append(f"3: the {state} run {states[state]!r} is not in the table")
                if state in states and state.lower()[:4] not in states[state].lower():
                    failures.append(f"3: the {state} run's name does not say so: {states[state]!r}")

            # 4: the best trial's page: its headline val_log_loss is the restored-weights value.
            page.goto(
                f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
            )
            page.wait_for_selector("text=val_log_loss", timeout=60_000)
            # The overview scrolls inside its own pane: bring its metrics table into the shot.
            page.get_by_text("Metrics (").first.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.screenshot(path=SHOTS / "best_trial.png")
            shown = run.data.metrics.get("val_log_loss")
            study_value = parent.data.metrics.get("best_objective")
            if shown is None or study_value is None or abs(shown - study_value) > 1e-9 * max(1, abs(shown)):
                failures.append(
                    f"4: headline val_log_loss {shown} is not the best trial's value {study_value}"
                )
            listed = page.inner_text("body")
            if "while_training/" not in listed or listed.find("val_log_loss") > listed.find(
                "while_training/"
            ):
                failures.append("4: the run's metrics do not list val_log_loss before its per-epoch series")

            # 7: the best trial's link in the experiment's description opens its run.
            # MLflow opens a description's links in a new tab (target=_blank).
            page.goto(url)
            with page.context.expect_page(timeout=30_000) as opened:
                page.locator(f"a[href*='{run.info.run_id}']").first.click()
            tab = opened.value
            # Playwright's TimeoutError: the check below says what opened instead of a crash.
            with contextlib.suppress(Exception):
                tab.wait_for_selector("text=val_log_loss", timeout=60_000)
            if run.info.run_id not in tab.url or run.info.run_name not in tab.inner_text("body"):
                failures.append(f"7: the description's link opened {tab.url}, not the best trial's run")

            # 5: a plot artifact renders as an image.
            page.goto(
                f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs/"
                f"{parent.info.run_id}/artifacts/plots/optimization_history.png"
            )
            try:  # the preview is an <img> (its source may be a blob: URL): any drawn picture
                page.wait_for_function(
                    "Array.from(document.images).some(i => i.complete && i.naturalWidth > 300)",
                    timeout=90_000,
                )
            except Exception:  # Playwright's TimeoutError: reported as a failed check, not a crash
                failures.append("5: the optimization_history.png artifact did not render as an image")
            page.screenshot(path=SHOTS / "plot.png")
            browser.close()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    for failure in failures:
        print(f"FAILED {failure}")
    print(f"{CHECKS - len({f[0] for f in failures})} of {CHECKS} checks passed; screenshots in {SHOTS}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
