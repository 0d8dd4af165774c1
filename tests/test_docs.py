"""Every link and code block in README.md and docs/*.md is checked, so none goes stale silently.

Links: each relative file exists, each ``#anchor`` is a heading of its file. Code blocks, page by
page in the order printed, in one folder where the README's first command ran (a one-trial
plants study with the default identity):
- ``tuning sweep`` lines are composed and validated (the checks `tuning sweep` runs before
  anything) and replayed against the studies the page made before them, so a line that a
  study would refuse as a changed experiment fails here; lines with Hydra flags run for real;
- ``tuning train`` / ``predict`` / ``report`` lines name a study an earlier line made and
  parse; train overrides compose on a real best.yaml; ``$ tuning ...`` lines in ``text`` blocks
  run, and the error printed under them must match;
- python blocks run (a ``# NAME.py`` block is written as that module and imported), yaml
  blocks parse and match the conf/ file they copy, other tools' commands are checked where cheap (files, flags, extras).
A block the test cannot run is marked before it: ``<!-- not run: why -->`` (then only cheap
static checks) or ``<!-- output: what -->`` (printed output). Any other block fails.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from conftest import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
MARK = re.compile(r"<!-- (not run|output): \S.*-->\s*$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
TOOLS = {
    ".",
    "tuning",
    "python",
    "python3",
    "pip",
    "ruff",
    "mypy",
    "mlflow",
    "docker",
    "kubectl",
    "optuna-dashboard",
}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = BLOCK.sub("", page.read_text())
    return {slug(m[1]) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """(language, body, marker) of each fenced block; the marker is the comment line before it."""
    text, out = page.read_text(), []
    for m in BLOCK.finditer(text):
        before = [line for line in text[: m.start()].splitlines() if line.strip()]
        mark = MARK.search(before[-1]) if before else None
        body = "\n".join(line.removeprefix(m["indent"]) for line in m["body"].splitlines())
        out.append((m["lang"], body, mark[1] if mark else None))
    return out


def commands(body: str) -> list[list[str]]:
    """Shell words of each command line (continuations joined, comments dropped, `&&` split)."""
    out = []
    for line in body.replace("\\\n", " ").splitlines():
        for part in line.removeprefix("$ ").split(" && "):
            words = shlex.split(part, comments=True)
            if words:
                out.append(["tuning", *words[3:]] if words[:3] == ["python", "-m", "tuning"] else words)
    return out


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(BLOCK.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.name}: {target} (no heading)")
    assert broken == []


def test_readme_is_short_and_its_install_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text()
    first = commands(blocks(ROOT / "README.md")[0][1])
    assert ["pip", "install", "-e", "."] in first and ["tuning", "sweep"] in first
    assert ["pip", "install", "-e", ".[test]"] in first and ["python", "-m", "pytest"] in first
    assert "pip install -q -e '.[test]'" in ci and ci.rstrip().endswith("python -m pytest")


class Page:
    """One page's blocks replayed in order; ``studies``: name -> (identity, engine options)."""

    def __init__(self, page: Path, plants: tuple[dict, dict]):
        self.page, self.studies = page.name, {"plants": plants}

    def sweep(self, args: list[str]) -> None:
        from tuning.commands.sweep import check
        from tuning.config import compose, resolved
        from tuning.study.identity import check_resume, study_identity

        if any(a.startswith("-") for a in args):  # --cfg job, --help: cheap, run them
            assert cli(["sweep", *args]) == 0, args
            return
        settings = resolved(compose("config", args))
        check(settings)
        name, engine = settings["study"]["name"], dict(settings["engine"])
        engine.pop("hyperband_iterations", None)  # the one KerasTuner option a resume may change
        identity = study_identity(settings)
        if name in self.studies:
            check_resume(name, self.studies[name][0], identity)
            assert self.studies[name][1] == engine, f"{name}: engine options changed: {args}"
        self.studies.setdefault(name, (identity, engine))

    def known(self, name: str, words: list[str]) -> None:
        assert name in self.studies, f"{self.page}: {words} names study {name!r}; no earlier line makes it"

    def train(self, args: list[str], folder: Path) -> None:
        from tuning.commands import train
        from tuning.config import compose, resolved

        study = next(a.split("=", 1)[1] for a in args if a.startswith("study="))
        self.known(study, args)
        if any(a.startswith("-") for a in args):
            assert cli(["train", "study=plants", *[a for a in args if not a.startswith("study=")]]) == 0
            return
        best, rest = train.find_best(["study=plants", *[a for a in args if not a.startswith("study=")]])
        overrides = train.overrides_for(train.read_best(best), rest)
        train.check(resolved(compose(best.stem, overrides, best.parent.resolve())), str(best))

    def predict(self, args: list[str]) -> None:
        from tuning.commands.predict import parse

        values = parse(args)
        study = Path(values["model"]).relative_to("experiments").parts[0]
        self.known(study, args)
        rows = Path(values["data.path"])
        if rows.is_file():  # written by a line above: the columns the study's model reads, no target
            best = yaml.safe_load(Path(f"experiments/{study}/best.yaml").read_text())["best"]
            assert rows.read_text().splitlines()[0].split(",") == best["columns"], args

    def report(self, args: list[str]) -> None:
        from tuning.commands.report import _parser

        study = _parser().parse_args(args).study
        self.known(study, args)
        if study == "plants":
            assert cli(["report", *args]) == 0

    def run(self, words: list[str], folder: Path) -> None:
        tool, args = words[0], words[1:]
        assert tool in TOOLS, (
            f"{self.page}: {words}: no check for {tool}; mark the block <!-- not run: why -->"
        )
        if tool == "tuning":
            command, args = (args[0], args[1:]) if args else ("--help", [])
            if command in ("sweep", "train", "predict", "report"):
                getattr(self, command)(*([args, folder] if command == "train" else [args]))
            else:
                assert command == "--help", (
                    f"{self.page}: {words}: no check for it; mark the block <!-- not run: why -->"
                )
                assert cli([command, *args]) == 0, words
        elif tool == "pip":
            extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
            for spec in args[2:]:
                assert spec == "." or re.fullmatch(r"\.\[(\w+)\]", spec)[1] in extras, words
        elif words[:3] == ["python", "-m", "pytest"]:  # options pytest has, files that exist
            known = ("-m", "not slow", "-n0")
            assert all(a in known or (ROOT / a).is_file() for a in args[2:]), words
        elif tool.startswith("python") and args[0] == "-c":  # a one-liner (new rows to predict): run here
            exec(compile(args[1], f"{self.page}: python -c", "exec"), {})
        elif tool.startswith("python") and args[0].endswith(".py"):
            script = ROOT / args[0]
            shared = script.parent / "common.py"  # the benchmarks' shared flags
            script = script.read_text() + (
                shared.read_text() if "import common" in script.read_text() else ""
            )
            assert all(f'"{flag}"' in script for flag in args[1:] if flag.startswith("--")), words
        elif tool == "mlflow":
            import click
            from mlflow.cli import cli as mlflow_cli

            command = mlflow_cli.get_command(click.Context(mlflow_cli), args[0])
            options = {o for p in command.params for o in p.opts}
            assert {a for a in args[1:] if a.startswith("--")} <= options, words
        elif tool == "mypy":
            assert find_spec("mypy") and args in (["tuning"], ["--strict", "tuning"]), words
        elif tool == "ruff":
            assert find_spec("ruff") and args[0] in ("check", "format"), words
        else:
            pytest.fail(f"{self.page}: {words}: mark the block <!-- not run: why -->")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The README's first command, one trial: a plants study with the default identity."""
    path = tmp_path_factory.mktemp("docs")
    cwd = Path.cwd()
    os.chdir(path)
    try:
        assert cli(["sweep", "study.n_trials=1", "tracking=none"]) == 0
        yield path
    finally:
        os.chdir(cwd)


def default_plants() -> tuple[dict, dict]:
    """What the README's first command makes: the identity and engine options of plants."""
    from tuning.config import compose, resolved
    from tuning.study.identity import study_identity

    plants = resolved(compose("config", []))
    return study_identity(plants), {**plants["engine"]}


@pytest.mark.slow  # the folder fixture trains one trial
def test_help_examples_run_in_order(folder, monkeypatch):
    """`tuning --help`'s examples, replayed in one folder like a page (issue 32: seed=7 was
    printed as a resume of plants, which the study refuses)."""
    from tuning.cli import USAGE

    monkeypatch.chdir(folder)
    replay = Page(Path("tuning --help"), default_plants())
    examples = [
        commands(line)[0]
        for line in USAGE.split("examples:")[1].splitlines()
        if line.strip()[:7] == "tuning "
    ]
    assert len(examples) >= 5
    for words in examples:
        if words[1] != "serve":  # starts a server: docs/serving.md and its tests
            replay.run(words, folder)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_blocks(page, folder, monkeypatch, capsys):
    from tuning.commands.sweep import check
    from tuning.config import compose, resolved

    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    replay = Page(page, default_plants())
    for lang, body, mark in blocks(page):
        if mark == "output":
            assert lang in ("", "text"), body
            for words in commands("\n".join(x for x in body.splitlines() if x.startswith("$ "))):
                check(resolved(compose("config", words[2:])))
        elif lang == "yaml":  # and a copy of a conf/ file says what the file says
            shown = yaml.safe_load(body)
            confs = [yaml.safe_load(f.read_text()) for f in (ROOT / "conf").rglob("*.yaml")]
            assert isinstance(shown, dict) and all(
                c == shown for c in confs if c and c.keys() == shown.keys()
            )
        elif lang == "python":
            module = re.match(r"# (\w+)\.py", body)
            if mark:
                compile(body, page.name, "exec")
                imports = re.findall(r"^(?:from|import) (\w+)", body, re.M)
                assert all(find_spec(name) for name in imports), imports
            elif module:
                (folder / f"{module[1]}.py").write_text(body)
                __import__(module[1])
            else:
                exec(compile(body, page.name, "exec"), {})
        elif lang == "text" and body.startswith("$ "):
            for command, expected in re.findall(r"^\$ (.+)\n((?:[^$].*\n?)*)", body, re.M):
                assert cli(commands(command)[0][1:]) == 2, command
                assert expected.strip() in capsys.readouterr().err, command
        elif mark == "not run":
            for words in commands(body):
                assert words[0] in TOOLS, words
        elif lang == "bash":
            for words in commands(body):
                replay.run(words, folder)
        else:
            pytest.fail(f"{page.name}: a {lang or 'plain'} block neither run nor marked: {body[:80]!r}")
