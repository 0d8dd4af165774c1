"""deploy/: the compose file, the Kubernetes manifests and the SLURM script cannot run here, so
each is parsed, every `tuning sweep` command line in it is composed and validated with the real
config, and no credential is written in it in clear."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from tuning.commands.sweep import check
from tuning.config import compose, resolved
from tuning.config.storage import check_storage

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
YAML_FILES = sorted([*DEPLOY.glob("compose*.yaml"), *DEPLOY.glob("kubernetes*/*.yaml")])
# What the environment gives each command at run time (a Secret, the shell, SLURM).
ENV = {
    "STUDY_STORAGE": "postgresql://tuner@db.example.org/optuna",
    "TRACKING_URI": "https://mlflow.example.org",
    "SLURM_CPUS_PER_TASK": "4",
    "TUNING_DB_HOST": "db.example.org",
    "TUNING_MLFLOW": "http://mlflow.example.org:5000",
}
# user:password@ in a URL, or a password/secret key given a literal value.
CLEAR_SECRET = re.compile(
    r"://[^/\s:@\"']+:[^/\s@\"']+@|(password|secret|token)[\"']?\s*[:=]\s*[\"']?(?!\$)\w", re.I
)


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def containers(doc: dict) -> list[dict]:
    """Containers of a Deployment or Job, or the services of a compose file."""
    if "services" in doc:
        return list(doc["services"].values())
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", [])


def expand(word: str) -> str:
    """Kubernetes' $(VAR) and the shell's ${VAR} / $VAR, with the values the environment gives."""
    return re.sub(r"\$\((\w+)\)|\$\{(\w+)\}|\$(\w+)", lambda m: ENV[next(g for g in m.groups() if g)], word)


def sweep_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in YAML_FILES:
        for doc in documents(path):
            for c in containers(doc):
                words = [*(c.get("command") or []), *(c.get("args") or [])]
                if words[:2] == ["tuning", "sweep"]:
                    found.append((f"{path.relative_to(DEPLOY)}", words[2:]))
    script = (DEPLOY / "slurm" / "sweep.sbatch").read_text().replace("\\\n", " ")
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] == ["srun", "tuning", "sweep"]:
            found.append(("slurm/sweep.sbatch", words[3:]))
    return found


def test_every_recipe_parses_and_has_a_worker_command():
    for path in YAML_FILES:
        assert documents(path), path
    kinds = {d.get("kind") for p in DEPLOY.glob("kubernetes/*.yaml") for d in documents(p)}
    assert {"Deployment", "Service", "Job"} <= kinds
    [job] = [d for d in documents(DEPLOY / "kubernetes" / "job.yaml") if d["kind"] == "Job"]
    assert job["spec"]["completionMode"] == "Indexed"  # JOB_COMPLETION_INDEX: each pod's stream
    assert job["spec"]["parallelism"] == job["spec"]["completions"] >= 2
    assert "#SBATCH --array=" in (DEPLOY / "slurm" / "sweep.sbatch").read_text()
    assert sorted({name for name, _ in sweep_commands()}) == [
        "compose-grpc.yaml", "compose.yaml", "kubernetes-external/job.yaml", "kubernetes/job.yaml",
        "slurm/sweep.sbatch",
    ]  # fmt: skip


@pytest.mark.parametrize(("name", "args"), sweep_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_worker_command_composes_and_validates(name, args):
    """The same checks `tuning sweep` runs before anything (config values, sampler and pruner,
    the storage URL and its driver), on the command as the recipe runs it."""
    overrides = [expand(a) for a in args]
    settings = resolved(compose("config", overrides))
    check(settings)
    assert settings["study"]["storage"].startswith(("postgresql://tuner@", "grpc://"))
    check_storage(settings["study"]["storage"], reach_server=False)
    assert settings["tracking"]["uri"].startswith(("http://", "https://"))
    assert settings["workers"] == 1  # one process per pod / task: the cluster starts the workers


def test_no_credential_is_written_in_clear():
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    leaks = {str(p): m.group(0) for p in files for m in [CLEAR_SECRET.search(p.read_text())] if m}
    assert leaks == {}
    for path in YAML_FILES:  # passwords reach the containers from a Secret or the shell only
        for doc in documents(path):
            for c in containers(doc):
                env = c.get("env") or c.get("environment") or {}
                items = env.items() if isinstance(env, dict) else [(e["name"], e) for e in env]
                for key, value in items:
                    if "PASSWORD" in key:
                        assert (
                            isinstance(value, dict)
                            and "secretKeyRef" in value.get("valueFrom", {})
                            or (isinstance(value, str) and value.startswith("${"))
                        ), (path, key, value)


def test_grpc_recipe_workers_reach_the_database_only_through_the_proxy():
    """compose-grpc.yaml: the proxy is the one service with the study database's URL and
    password; the workers name the proxy and hold no database password."""
    [doc] = documents(DEPLOY / "compose-grpc.yaml")
    services = doc["services"]
    proxy, worker = services["storage-proxy"], services["worker"]
    words = proxy["command"]
    assert words[:2] == ["tuning", "storage-proxy"]
    options = dict(zip(words[2::2], words[3::2], strict=True))
    check_storage(options["--storage"], reach_server=False)
    assert options["--storage"].startswith("postgresql://tuner@postgres:")
    assert (
        options["--host"] == "0.0.0.0"
        and worker["command"].count(f"study.storage=grpc://storage-proxy:{options['--port']}") == 1
    )
    assert "environment" not in worker and "postgres" not in worker["depends_on"]
    assert "storage-proxy" in worker["depends_on"]
