"""The deployment files, checked without Docker: the compose services, their settings and commands, the image.

Docker does not run here, so the compose file is parsed with PyYAML (variables take their defaults, as
``docker compose`` would with none set), its settings go through the real ``Settings.from_env``, and
every command is resolved against the real ``genretag`` click group and Celery app.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from genretag.cli import cli
from genretag.config import Settings
from genretag.worker.schedule import parse_cron

REPO = Path(__file__).resolve().parents[1]
GENRETAG_SERVICES = ("worker", "beat", "producer", "flower")


def interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` with no variable set: the default, or empty."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def volume(spec: str) -> tuple[str, str, str]:
    source, target, *mode = spec.split(":")
    return source, target, mode[0] if mode else "rw"


def test_services_and_images(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "postgres", *GENRETAG_SERVICES}
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")
    for name in GENRETAG_SERVICES:
        service = services[name]
        assert service["build"] == "." and (REPO / "Dockerfile").is_file()
        assert service["image"] == "genretag:latest"
        assert "entrypoint" not in service  # the image's ENTRYPOINT is the genretag command


def test_postgres_and_redis_have_healthchecks_and_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    pg = services["postgres"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    (data,) = pg["volumes"]
    source, target, _ = volume(data)
    assert target == "/var/lib/postgresql/data" and source in compose["volumes"]
    assert pg["environment"]["POSTGRES_DB"] == "genretag" and pg["environment"]["POSTGRES_USER"] == "genretag"
    redis = services["redis"]
    assert "ping" in redis["healthcheck"]["test"]
    assert volume(redis["volumes"][0])[0] in compose["volumes"]
    for name in GENRETAG_SERVICES:  # nothing starts before the database and broker answer
        assert services[name]["depends_on"] == {
            "redis": {"condition": "service_healthy"}, "postgres": {"condition": "service_healthy"}}


def test_settings_point_at_the_services(services: dict[str, Any]) -> None:
    pg_env = services["postgres"]["environment"]
    for name in GENRETAG_SERVICES:
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        assert all(k.startswith("GENRETAG_") for k in env)
        settings = Settings.from_env(env)  # the product's own parsing: unknown names would be ignored
        known = {f"GENRETAG_{f.upper()}" for f in Settings.__dataclass_fields__}
        assert set(env) <= known, set(env) - known
        db = make_url(settings.database_url)
        assert (db.get_backend_name(), db.get_driver_name(), db.host, db.port) == ("postgresql", "psycopg", "postgres",
                                                                                    5432)
        assert (db.username, db.password, db.database) == (
            pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"], pg_env["POSTGRES_DB"])
        assert settings.broker_url == "redis://redis:6379/0" and not settings.local_mode
        assert settings.library_roots == ("/music",)
        parse_cron(settings.scan_schedule)
        importlib.import_module("psycopg")  # the URL's driver is installed


def test_music_is_mounted_read_only_at_the_same_path_everywhere(services: dict[str, Any]) -> None:
    for name in GENRETAG_SERVICES:
        mounts = [volume(v) for v in services[name]["volumes"]]
        music = [m for m in mounts if m[1] == "/music"]
        assert len(music) == 1 and music[0][2] == "ro", (name, mounts)


def test_workers_scale_and_the_producer_runs_once(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 1
    assert "container_name" not in worker and "ports" not in worker  # both would stop --scale worker=N
    grace = int(worker["stop_grace_period"].rstrip("s"))
    assert grace > Settings().task_time_limit  # a stopping worker finishes its tasks before the KILL
    worker_settings = Settings.from_env({k: str(v) for k, v in worker["environment"].items()})
    assert worker_settings.workers >= 1 and worker_settings.inference_threads >= 1
    producer = services["producer"]
    assert producer["restart"] == "no" and producer["profiles"]
    assert producer["command"] == ["scan", "/music"]
    beat = services["beat"]
    state = [volume(v) for v in beat["volumes"] if volume(v)[1] == "/state"]
    assert state and state[0][2] == "rw"
    assert beat["command"][beat["command"].index("--schedule-file") + 1].startswith("/state/")


@pytest.mark.parametrize("name", GENRETAG_SERVICES)
def test_service_commands_are_real_genretag_commands(services: dict[str, Any], name: str) -> None:
    command = services[name]["command"]
    assert command[0] in cli.commands, f"{name}: genretag has no command {command[0]!r}"
    # click checks every option given before --help: a renamed or missing option fails here.
    res = CliRunner().invoke(cli, [*command, "--help"])
    assert res.exit_code == 0, res.output


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_installs_the_package_and_runs_the_genretag_script() -> None:
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    entrypoint = json.loads(dict(steps)["ENTRYPOINT"])
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["genretag"] and "genretag" in scripts
    module, func = scripts["genretag"].split(":")
    assert callable(getattr(importlib.import_module(module), func))
    assert any(kind == "RUN" and "pip install ." in arg for kind, arg in steps)
    for kind, arg in steps:  # everything copied exists; the package and its metadata go in
        if kind == "COPY":
            *sources, _dest = shlex.split(arg)
            assert all((REPO / s).exists() for s in sources), arg
    copied = " ".join(arg for kind, arg in steps if kind == "COPY")
    assert "pyproject.toml" in copied and "genretag" in copied
    assert dict(steps).get("USER") not in (None, "root")


def test_the_image_installs_the_runtime_without_tensorflow() -> None:
    installs = [arg for kind, arg in dockerfile_instructions() if kind == "RUN" and "pip install" in arg]
    assert installs and not any("[" in arg or "tensorflow" in arg for arg in installs)  # no extra: no `train`
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith(("tensorflow", "keras"))]
    assert [d for d in project["dependencies"] if d.startswith("ai-edge-litert")]
    assert [d for d in project["optional-dependencies"]["train"] if d.startswith("tensorflow")]


def test_dockerignore_keeps_what_the_image_needs() -> None:
    ignored = [line for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ".git" in ignored and ".venv" in ignored
    assert not {"genretag", "genretag/", "pyproject.toml", "README.md"} & set(ignored)
    assert "!genretag/data/*.genretag" in ignored  # the shipped model survives the *.genretag rule


def test_documented_celery_app_paths_import() -> None:
    from celery import Celery

    paths = set()
    for doc in ("docs/scheduling.md", "docs/deployment.md", "docker-compose.yml"):
        paths |= set(re.findall(r"celery -A ([\w.]+)", (REPO / doc).read_text()))
    assert paths, "the docs name the Celery app"
    for path in paths:
        assert isinstance(importlib.import_module(path).app, Celery), path


def test_documented_genretag_commands_exist() -> None:
    shown = []
    for doc in ("docs/scheduling.md", "docs/deployment.md", "docs/querying.md", "docker-compose.yml"):
        text = (REPO / doc).read_text()
        fenced = re.findall(r"```.*?```", text, re.S)
        inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for code in [*fenced, *inline]:  # the compose file has none: only its run lines count
            shown += [(doc, c) for c in re.findall(r"(?:^|[\s/])genretag (\w+)", code)]
        shown += [(doc, c) for c in re.findall(r"compose run --rm producer (\w+)", text)]
    assert {c for _, c in shown} >= {"beat", "worker", "scan", "stats", "export"}
    for doc, command in shown:
        assert command in cli.commands, (doc, command)


def test_documented_command_lines_parse() -> None:
    """Every ``genretag ...`` line in the docs' code blocks has options the command really takes."""
    lines = []
    for doc in ("docs/scheduling.md", "docs/querying.md"):
        for block in re.findall(r"```(?:sh)?\n(.*?)```", (REPO / doc).read_text(), re.S):
            lines += [line.split("#", 1)[0] for line in block.splitlines() if line.startswith("genretag ")]
    assert len(lines) >= 10
    for line in lines:
        res = CliRunner().invoke(cli, [*shlex.split(line)[1:], "--help"])
        assert res.exit_code == 0, (line, res.output)


def test_flower_is_an_optional_profile_published_on_the_loopback(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["profiles"] == ["flower"]  # `docker compose up` alone does not start it
    assert flower["restart"] == "unless-stopped"
    (port,) = flower["ports"]
    assert port == "127.0.0.1:5555:5555"  # no login by default: never on every interface
    command = flower["command"]
    assert command[:1] == ["flower"] and command[command.index("--address") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == port.rsplit(":", 1)[1]
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.match(r"flower\b", d) for d in dependencies)
    assert "--profile flower up -d flower" in (REPO / "docs/deployment.md").read_text()


def test_genretag_flower_serves_the_workers_page(redis_url: str) -> None:
    """`genretag flower` runs the real Flower on the broker; its page answers on the loopback."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "GENRETAG_BROKER_URL": redis_url}
    proc = subprocess.Popen([sys.executable, "-m", "genretag.cli", "flower", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, body = time.monotonic() + 60, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert "<title>Workers" in body and "Flower" in body, proc.stderr.read() if proc.poll() is not None else body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
