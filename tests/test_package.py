"""The connector as a user installs it: an sdist and a wheel built as `python -m build` builds
them, the wheel installed into an environment of its own (with the dbt extra), and the command
run from a folder of the user's, away from the checkout: load, check, push, dbt, the sandbox."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from emulators.venv import INSTALL_AND_RUN_TIMEOUT, TOOL_VENVS
from test_dbt import dbt_bin  # noqa: F401 - the installed environment, a fixture
from test_orchestrators import orchestrator_environment, run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(INSTALL_AND_RUN_TIMEOUT)
WHERE = "import pipelines, rackwave_source, rackwave_dbt; " \
        "print(pipelines.__file__, rackwave_source.__file__, list(rackwave_dbt.__path__)[0])"


def test_the_installed_wheel_loads_checks_pushes_and_builds_dbt_in_the_users_folder(
        sandbox: Any, tmp_path: Path, dbt_bin: Path) -> None:  # noqa: F811
    built = sorted(p.name for p in (TOOL_VENVS / "dist").iterdir())  # by the environment's build
    assert sorted(n.rsplit(".", 1)[-1] for n in built) == ["gz", "whl"], built
    environment = orchestrator_environment(tmp_path, dbt_bin, sandbox)  # no checkout on the path
    user = tmp_path / "work"
    user.mkdir()
    imported = run([str(dbt_bin / "python"), "-c", WHERE], environment, user).split()
    venv = dbt_bin.parent.resolve()
    assert all(Path(p).resolve().is_relative_to(venv) for p in imported), imported
    project = Path(imported[2])

    loaded = run(["rackwave", "--json"], environment, user)
    assert json.loads(loaded)["status"] == "loaded"
    assert json.loads(run(["rackwave", "check", "--json"], environment, user))["status"] == "ok"
    pushed = run(["rackwave", "push", "leads", "--json", "--query",
                  "SELECT 'Wheel ' || name AS name, 'wheel.' || email AS email "
                  "FROM rackwave.leads ORDER BY id LIMIT 3"], environment, user)
    assert json.loads(pushed)["outcomes"]["created"] == 3
    built_models = run(["rackwave", "dbt"], environment, user)
    assert "dbt build passed: 3 models" in built_models

    # dbt's artifacts and logs are the user's, in their folder; the installed project is as shipped
    assert (user / "rackwave_dbt" / "target" / "run_results.json").is_file()
    assert any((user / "rackwave_dbt" / "logs").iterdir())
    assert sorted(p.name for p in project.iterdir() if p.name != "__pycache__") == \
        ["dbt_project.yml", "macros", "models", "profiles.yml", "tests"]

    # the README's first command, in a folder of its own
    demo = tmp_path / "demo"
    demo.mkdir()
    done = subprocess.run(["rackwave", "--sandbox", "--sandbox-leads", "50", "--sandbox-contacts",
                           "10"], env=environment, cwd=demo, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (demo / "rackwave_data.duckdb").is_file()
