"""Operating rankloop: ``rankloop up`` stops what it started on any signal; production commands
say what they use; the example env files load in a shell as the settings read them; the
compose file and the cluster manifests hold together; every route of the coordinator has its
operation (its contract in the OpenAPI document) and every operation its route."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from rankloop.core.settings import load_settings
from rankloop.core.startup import announce, redact
from service import routing

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
RANKLOOP = [sys.executable, "-m", "rankloop"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any RANKLOOP_* variable (the test's own settings only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKLOOP_")}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(process: subprocess.Popen, text: str, timeout_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} within {timeout_s} s: {''.join(lines)[-2000:]}")


@pytest.mark.slow  # starts processes
@pytest.mark.timeout(240)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_rankloop_up_stops_every_process_it_started_on_any_signal(tmp_path, stop_signal):
    up = subprocess.Popen(
        [*RANKLOOP, "up", "--var", str(tmp_path / "var"), "--port", str(free_port())],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_line(up, "rankloop is up", timeout_s=120)
        children = psutil.Process(up.pid).children(recursive=True)
        commands = [" ".join(c.cmdline()) for c in children]
        assert len(children) >= 2, commands  # the render and the bookkeeping worker
        assert all("celery" in command for command in commands), commands
        up.send_signal(stop_signal)
        said = wait_for_line(up, "stopping", timeout_s=60)
        up.send_signal(stop_signal)  # again while it stops (Ctrl-C pressed twice): ignored
        code = up.wait(timeout=60)
        output = "".join(said) + (up.stdout.read() if up.stdout else "")
        assert code == 0, (code, output)  # a stop asked for is a clean stop, SIGINT included
        assert f"stopping ({stop_signal.name})" in output, output
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [p.pid for p in alive]
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
        up.wait()


@pytest.mark.slow  # starts processes
def test_production_commands_say_what_they_use_and_warn_on_embedded_defaults(tmp_path):
    bare = subprocess.run(
        [*RANKLOOP, "db", "upgrade"], cwd=tmp_path, env=clean_env(), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert bare.returncode == 0, bare.stderr
    assert "rankloop db upgrade: database sqlite:///" in bare.stderr
    assert "WARNING" in bare.stderr and "no RANKLOOP_* variable is set" in bare.stderr
    url = f"sqlite:///{tmp_path / 'configured.sqlite'}"
    configured = subprocess.run(
        [*RANKLOOP, "db", "upgrade"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=clean_env(RANKLOOP_DATABASE_URL=url),
    )  # fmt: skip
    assert configured.returncode == 0, configured.stderr
    assert f"database {url}" in configured.stderr and "WARNING" not in configured.stderr


@pytest.mark.slow  # starts processes
@pytest.mark.timeout(120)
def test_rankloop_serve_reads_the_gunicorn_config_file(tmp_path):
    port = free_port()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(f'bind = "127.0.0.1:{port}"\nworkers = 1\nthreads = 2\n')
    env = clean_env(RANKLOOP_VAR_DIR=str(tmp_path / "var"), RANKLOOP_BROKER_URL="memory://")
    serve = subprocess.Popen(
        [*RANKLOOP, "serve", "--config", str(config)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        lines = wait_for_line(serve, f"Listening at: http://127.0.0.1:{port}", timeout_s=60)
        assert any(line.startswith("rankloop serve: database sqlite:///") for line in lines)
        assert not any("WARNING" in line for line in lines)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(timeout=30)


PACKAGES = ("rankloop", "service", "gpu_worker", "annotator_ui")  # what the wheel holds


def test_rankloop_serve_reads_gunicorn_settings_shipped_in_the_package(monkeypatch, tmp_path):
    """``infra/`` is not in the wheel: ``rankloop serve``'s default config is a file of the
    package, no package module builds a path into the checkout, the image and the cluster
    manifest name the packaged module, and ``infra/gunicorn.conf.py`` is that module's settings."""
    import runpy

    from rankloop.commands import gunicorn_conf, serve

    package = Path(serve.__file__).parent
    assert package / "gunicorn_conf.py" == serve.GUNICORN_CONF
    assert serve.GUNICORN_CONF.is_file()
    (config,) = [p for p in serve.serve_command.params if p.name == "config_path"]
    assert config.default == str(serve.GUNICORN_CONF)
    for name in PACKAGES:
        for path in (ROOT / name).rglob("*.py"):
            text = path.read_text()
            assert "parents[" not in text and '"infra"' not in text, path
    assert '"python:rankloop.commands.gunicorn_conf"' in (INFRA / "Dockerfile").read_text()
    assert (
        '"python:rankloop.commands.gunicorn_conf"' in (INFRA / "k8s/coordinator.yaml").read_text()
    )
    assert (
        "ExecStart=/opt/rankloop/.venv/bin/rankloop serve\n"
        in (INFRA / "systemd/rankloop-web.service").read_text()
    )
    # (the conf makes a Prometheus directory unless one is set: keep this process out of it)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    from gunicorn.config import make_settings

    packaged = runpy.run_path(str(serve.GUNICORN_CONF))
    checkout = runpy.run_path(str(INFRA / "gunicorn.conf.py"))
    settings = set(gunicorn_conf.__all__)  # every gunicorn setting the packaged file makes
    assert settings == {name for name in packaged if name in make_settings()}
    assert {k: checkout[k] for k in settings} == {k: getattr(gunicorn_conf, k) for k in settings}


@pytest.mark.slow  # builds a wheel (a few seconds)
@pytest.mark.timeout(180)
def test_rankloop_serve_finds_its_gunicorn_settings_in_an_installed_wheel(tmp_path):
    """Built from a copy of the sources and installed in a folder of its own, away from the
    checkout: the wheel holds the gunicorn settings and ``rankloop serve`` names that copy."""
    import shutil
    import zipfile

    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=150,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("rankloop-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rankloop/commands/gunicorn_conf.py" in names
    assert not any(name.startswith("infra/") for name in names)
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    shutil.rmtree(source)  # nothing of the sources is left to fall back on
    env = {**clean_env(), "PYTHONPATH": str(site)}  # the installed copy, not the checkout
    helped = subprocess.run([sys.executable, "-m", "rankloop", "serve", "--help"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert helped.returncode == 0, helped.stderr
    unwrapped = "".join(helped.stdout.split())  # (click wraps the path across lines)
    assert f"[default:{site / 'rankloop' / 'commands' / 'gunicorn_conf.py'}]" in unwrapped


def test_the_deploy_guide_runs_every_process_as_its_systemd_unit_does():
    """The deploy guide's table of processes and the units in infra/ give the same command lines."""
    import re

    def normal(command: str) -> str:
        command = command.replace("/opt/rankloop/.venv/bin/", "").replace("\\\n", " ")
        command = re.sub(r"^CUDA_VISIBLE_DEVICES=\S+ ", "", command)
        return " ".join(re.sub(r"\b(coord|gpu)(\d+|%i)@%[hH]", r"\1N@%h", command).split())

    units = [*(INFRA / "systemd").glob("*.service"), *(INFRA / "worker").glob("*.service")]
    started = {
        normal(re.search(r"^ExecStart=(.*?[^\\])$", unit.read_text(), re.M | re.S).group(1))
        for unit in units
    }
    guide = (ROOT / "docs" / "guides" / "deploy.md").read_text()
    production = guide.split("## Processes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(
        r"^\| (?:web|streams|bookkeeping|beat|render) \| `([^`]+)` \|", production, re.M
    )
    assert len(rows) == 5 and {normal(row) for row in rows} == started


def test_announce_hides_passwords():
    settings = load_settings(
        {
            "RANKLOOP_DATABASE_URL": "postgresql+psycopg://rankloop:s3cret@db:5432/rankloop",
            "RANKLOOP_BROKER_URL": "redis://:pw@redis:6379/0",
        }
    )
    (line,) = announce("web", settings, environ={"RANKLOOP_X": "1"})
    assert "s3cret" not in line and "pw@" not in line
    assert "postgresql+psycopg://rankloop:***@db:5432/rankloop" in line
    assert redact("redis://redis:6379/0") == "redis://redis:6379/0"


@pytest.mark.parametrize(
    "env_file", [INFRA / "rankloop.env.example", INFRA / "worker" / "worker.env.example"]
)
def test_example_env_files_load_in_a_shell_as_the_settings_read_them(env_file):
    shell = subprocess.run(
        ["bash", "-c", f"set -a; . {shlex.quote(str(env_file))}; env -0"],
        env={"PATH": os.environ["PATH"]}, capture_output=True, check=True,
    )  # fmt: skip
    environ = dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    loaded = {k: v for k, v in environ.items() if k.startswith("RANKLOOP_")}
    assert loaded, "the file sets no RANKLOOP_* variable"
    settings = load_settings(loaded)  # every value parses (JSON, rate strings, booleans)
    assert settings.broker_transport_options.get("global_keyprefix") == "rankloop:"
    if "RANKLOOP_RATELIMIT_ANNOTATOR" in loaded:
        assert settings.ratelimit_annotator == "1200/minute"


def _yaml_documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_compose_services_restart_and_long_running_ones_have_health_checks():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    for name, service in services.items():
        assert service.get("restart"), f"{name} has no restart policy"
    for name in ("postgres", "redis", "web"):
        assert "test" in services[name]["healthcheck"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("coord", "beat", "render-cpu"):
        command = services[name]["command"]
        assert "--loglevel INFO" in command or "--loglevel" in command, name
        if name != "beat":
            assert "--hostname" in command, name
    assert "--schedule /var/lib/rankloop/celerybeat-schedule" in services["beat"]["command"]


def test_compose_file_is_valid_against_the_compose_spec():
    # check-jsonschema ships the Compose specification's JSON schema: checked offline.
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
         "vendor.compose-spec", str(INFRA / "compose.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_k8s_manifests_are_valid_and_probe_health_endpoints():
    import kubernetes_validate  # the schemas of every Kubernetes release, shipped offline

    paths = sorted((INFRA / "k8s").glob("*.yaml"))
    documents = [document for path in paths for document in _yaml_documents(path)]
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)
    (web,) = [d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] ==
              "rankloop-web"]  # fmt: skip
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for document in documents:
        if document["kind"] == "Deployment":
            labels = document["spec"]["selector"]["matchLabels"]
            assert document["spec"]["template"]["metadata"]["labels"] == labels


def test_kubernetes_validate_refuses_a_broken_manifest():
    """The check above can fail: an unknown field and a missing container image are refused."""
    import kubernetes_validate

    (web,) = [d for d in _yaml_documents(INFRA / "k8s" / "coordinator.yaml")
              if d["kind"] == "Deployment" and d["metadata"]["name"] == "rankloop-web"]  # fmt: skip
    web["spec"]["replicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, "1.30", strict=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_parallel_lease_requests_lease_exactly_the_free_places_of_a_round(
    tmp_path, request, backend
):
    """24 annotators ask for a task at once on a round with 3 places: exactly 3 lease (never
    more, and never fewer: racing leases do not all step back from each other), the others are
    told "nothing now"."""
    import threading

    from sqlalchemy import func, select

    from service import db
    from service.driver import ROUNDS, TASKS
    from service.models import utcnow
    from service.statements import lease_running
    from tests.fixtures.coordinator import Owner, bearer, make_app, render_round

    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    app = make_app(tmp_path, url, RATELIMIT_ENABLED=False)
    owner = Owner(app.test_client())
    for attempt in range(5):  # a few rounds of 24 racing annotators, quorum 3
        cid = owner.campaign(start=True, annotators_per_round=3)["id"]
        render_round(app, cid, 0)
        tokens = owner.annotators(cid, 24)
        start = threading.Barrier(len(tokens))
        statuses: list[int] = []

        def fetch(token: str, start: threading.Barrier, statuses: list[int]) -> None:
            client = app.test_client()
            start.wait()
            statuses.append(client.get("/api/tasks/next", headers=bearer(token)).status_code)

        threads = [threading.Thread(target=fetch, args=(t, start, statuses)) for t in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        running_leases = (
            select(func.count())
            .select_from(TASKS.join(ROUNDS, ROUNDS.c.id == TASKS.c.round_id))
            .where(ROUNDS.c.campaign_id == cid, lease_running(utcnow()))
        )
        with db.get_engine(app).connect() as connection:
            running = connection.execute(running_leases).scalar_one()
        assert running == 3, (attempt, running, sorted(statuses))
        assert statuses.count(200) == 3 and set(statuses) <= {200, 204}, sorted(statuses)
    db.get_engine(app).dispose()


def test_parallel_joins_never_take_a_campaign_past_its_recruitment_cap(tmp_path, postgres_url):
    import threading

    from sqlalchemy import func, select

    from service import db
    from service.models import Annotator
    from tests.fixtures.coordinator import Owner, make_app

    app = make_app(tmp_path, postgres_url, RATELIMIT_ENABLED=False)
    owner = Owner(app.test_client())
    cid = owner.campaign(start=True, recruit=True, recruit_cap=3)["id"]
    start = threading.Barrier(16)
    statuses: list[int] = []

    def join(participant: str) -> None:
        client = app.test_client()
        start.wait()
        response = client.get(f"/join/{cid}?PROLIFIC_PID={participant}")
        statuses.append(response.status_code)

    threads = [threading.Thread(target=join, args=(f"p{n}",)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.session_scope(app) as session:
        joined = session.scalar(
            select(func.count()).select_from(Annotator).where(Annotator.campaign_id == cid)
        )
    assert joined == 3 and sorted(statuses) == [302] * 3 + [409] * 13, (joined, statuses)


def test_every_coordinator_route_has_its_operation_and_every_operation_its_route(tmp_path):
    from tests.fixtures.coordinator import make_app

    app = make_app(tmp_path)
    assert routing.drift(app) == []
    # Every route that is not the pages tier's or Flask's own static files is the coordinator's.
    for rule in app.url_map.iter_rules():
        if rule.endpoint != "static" and not rule.endpoint.startswith("ui."):
            assert rule.endpoint in routing.OPERATIONS, rule.rule
    document = app.test_client().get("/api/openapi.json").json
    documented = routing.documented_rules(app)
    declared = {(routing.openapi_path(rule), op.method.lower()) for rule, op in documented}
    served = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served == declared and len(served) == len(documented)  # one entry per operation


def test_the_drift_check_finds_a_route_without_contract_and_a_contract_without_route(monkeypatch):
    """The check above can fail: on a toy app, each way a route and its contract part."""
    from flask import Blueprint, Flask
    from pydantic import BaseModel

    class Thing(BaseModel):
        name: str

    monkeypatch.setattr(routing, "OPERATIONS", {})  # the toy's operations only
    toy, unserved = Blueprint("toy", __name__, url_prefix="/api/toy"), Blueprint("gone", __name__)

    @routing.operation(toy, "GET", "/<thing_id>", summary="A thing", auth="owner",
                       responses=routing.ok(Thing))  # fmt: skip
    def show_thing(thing_id: str):
        return {"name": thing_id}

    @toy.post("/<thing_id>/poke")  # routed the Flask way only: no contract
    def poke_thing(thing_id: str):
        return {"name": thing_id}

    @routing.operation(unserved, "GET", "/gone", summary="Never served", responses={})
    def gone():
        return {}

    app = Flask(__name__)
    app.register_blueprint(toy)
    assert routing.drift(app, packages=(__name__,)) == [
        "POST /api/toy/<thing_id>/poke (toy.poke_thing): no operation",
        "GET (gone.gone): an operation with no route",
    ]
    assert app.test_client().get("/api/toy/x").json == {"name": "x"}
    ((rule, declared),) = routing.documented_rules(app)
    assert routing.openapi_path(rule) == "/api/toy/{thing_id}" and declared.security == ("owner",)

    # Another method routed to a declared endpoint is drift too; one endpoint declared twice is
    # refused at import.
    other = Flask(__name__)
    other.register_blueprint(toy)
    other.add_url_rule("/api/toy/<thing_id>", "toy.show_thing", show_thing, methods=["DELETE"])
    assert "DELETE /api/toy/<thing_id> (toy.show_thing): its operation is GET" in (
        routing.drift(other, packages=(__name__,))
    )
    with pytest.raises(ValueError, match="declared twice"):
        routing.operation(toy, "GET", "/again", summary="Again", responses={},
                          endpoint="show_thing")(show_thing)  # fmt: skip
