"""The layers hold at run time: what each tier really loads, in a fresh interpreter.

``make lint`` checks the static imports (import-linter, ``[tool.importlinter]``); these tests
check what importing a tier pulls into ``sys.modules``, lazy imports and third-party
dependencies included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Imports each module named on the command line in turn and prints, per module, the forbidden
# top-level packages that appeared in sys.modules with it; then runs the optional statements.
PROBE = """
import importlib, json, sys
forbidden = set(json.loads(sys.argv[1]))
def roots():
    return {name.split(".")[0] for name in sys.modules} & forbidden
found = {}
for name in json.loads(sys.argv[2]):
    before = roots()
    importlib.import_module(name)
    if roots() - before:
        found[name] = sorted(roots() - before)
before = roots()
exec(sys.argv[3])
if roots() - before:
    found["(statements)"] = sorted(roots() - before)
print(json.dumps(found))
"""


def loaded(modules: list[str], forbidden: set[str], then: str = "") -> dict[str, list[str]]:
    """In a fresh interpreter: which of ``forbidden`` each of ``modules`` (and ``then``) loads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKLOOP_")}
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(sorted(forbidden)), json.dumps(modules), then],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def modules_of(package: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Every module of ``package``, found on disk (walking the package would import it), but
    those under ``skip``."""
    names = []
    for path in sorted(ROOT.joinpath(*package.split(".")).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not any(name == s or name.startswith(f"{s}.") for s in skip):
            names.append(name)
    return names


def test_the_core_loads_no_web_database_cloud_or_model_library():
    modules = modules_of("rankloop.core")
    assert {"rankloop.core", "rankloop.core.errors", "rankloop.core.storage"} <= set(modules)
    forbidden = {"flask", "celery", "kombu", "sqlalchemy", "boto3", "botocore", "torch",
                 "diffusers", "PIL", "service", "gpu_worker", "annotator_ui"}  # fmt: skip
    assert loaded(modules, forbidden) == {}


def test_the_probe_sees_what_a_module_loads():
    # The check above could not pass by seeing nothing: the same probe catches a real import.
    assert loaded(["service.app"], {"flask", "torch"}) == {"service.app": ["flask"]}


def test_the_coordinator_app_loads_no_model_library_and_no_gpu_worker(tmp_path):
    create = (
        "from service.app import create_app; create_app({"
        f"'DATABASE_URL': 'sqlite:///{tmp_path / 'app.sqlite'}', "
        f"'STORE_URL': '{tmp_path / 'objects'}', 'BROKER_URL': 'memory://'}})"
    )
    # All of the coordinator but the migrations (Alembic runs them) and the worker entry point
    # (it builds an app from the environment at import).
    modules = modules_of("service", skip=("service.migrations", "service.worker"))
    assert {"service.app", "service.api.tasks", "service.tasks"} <= set(modules)
    forbidden = {"torch", "diffusers", "transformers", "gpu_worker", "annotator_ui"}
    assert loaded(modules, forbidden, then=create) == {}


def test_the_gpu_worker_loads_no_database_and_no_coordinator():
    modules = modules_of("gpu_worker")
    assert {"gpu_worker.render", "gpu_worker.tasks", "gpu_worker.generators.cppn"} <= set(modules)
    forbidden = {"sqlalchemy", "psycopg", "flask", "service", "annotator_ui"}
    assert loaded(modules, forbidden) == {}


def test_the_pages_load_neither_the_coordinator_nor_the_gpu_worker():
    forbidden = {"service", "gpu_worker", "sqlalchemy", "torch"}
    assert loaded(modules_of("annotator_ui"), forbidden) == {}


def test_the_rankloop_package_shows_its_floors():
    """``rankloop/`` reads as its floors: no loose module of the top floor beside the core."""
    root = ROOT / "rankloop"
    entries = {p.stem for p in root.glob("*.py")} | {
        p.name for p in root.iterdir() if (p / "__init__.py").exists()
    }
    # imaging: the pixels both tiers make with Pillow (the attention image's look), a floor
    # beside stores.
    assert entries == {
        "__init__", "__main__", "stores", "imaging", "core", "commands", "simulation", "bench"
    }  # fmt: skip


def import_cycles(graph, package: str) -> list[tuple[str, str]]:
    """The imports between modules of ``package`` that close a cycle: ``a`` imports ``b`` and
    ``b`` leads back to ``a`` (function-level imports included, as grimp reads them)."""
    modules = {m for m in graph.modules if m == package or m.startswith(f"{package}.")}
    return sorted(
        (importer, imported)
        for importer in modules
        for imported in graph.find_modules_directly_imported_by(importer) & modules
        if graph.chain_exists(importer=imported, imported=importer)
    )


def test_the_coordinator_has_no_import_cycles():
    """One direction everywhere in ``service`` (``make lint`` checks the same between sibling
    packages with its acyclic_siblings contract): views and jobs > steps > rendering > the job
    sending, with no module that leads back to one that imports it."""
    import grimp

    graph = grimp.build_graph("service", cache_dir=None)
    assert import_cycles(graph, "service") == []
    # The check can fail: a step that reached back up to a view would be found.
    graph.add_import(importer="service.jobs", imported="service.api.tasks")
    assert ("service.jobs", "service.api.tasks") in import_cycles(graph, "service")
