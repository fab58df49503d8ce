"""Virtual environments for the tools the tests run (not import), each in `.venv-recipes/<name>`:
the two warehouse emulators, which pin libraries (DuckDB 2, sqlglot 30.11) that dlt 1.31 cannot
use; the orchestrator recipes (Airflow, Dagster), whose imports would slow every dlt process; and
dbt with the project installed from its wheel. Each is built again when its requirements change
(a hashed stamp), and a file lock makes a second pytest on the same checkout wait instead of
building it twice.

``make setup-dev`` builds them all before the tests, several at a time and while the main
environment installs (``python -m emulators.venv NAME ...`` from ``tests/``): an install
mostly waits on downloads, and a test that built one would spend the suite's time on it. uv
installs them when it is at hand (``uv``), pip otherwise. Only the standard library here, so the
builds can start before ``.venv`` has its packages.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

REPO = Path(__file__).resolve().parents[2]
TOOL_VENVS = REPO / ".venv-recipes"
#: a first build downloads and installs everything from the package registry
INSTALL_TIMEOUT = 600
#: a test that builds an environment (Airflow: 1 to 2 minutes from the registry), then runs it
INSTALL_AND_RUN_TIMEOUT = 900
#: what the wheel is built from: a change to any of it builds the installed environment again
PACKAGED = ("pyproject.toml", "rackwave_source", "pipelines", "rackwave_sandbox", "rackwave_dbt")


def tool_venv(name: str, requirements: Union[Sequence[str], Callable[[], Sequence[str]]],
              fingerprint: str = "", timeout: float = INSTALL_TIMEOUT) -> Path:
    """The bin folder of ``.venv-recipes/<name>`` with ``requirements`` installed (pip
    arguments), built again when they or ``fingerprint`` (e.g. the hash of a file they install
    from) change. ``requirements`` may be a function, called only when the environment is built
    (one that builds the wheel it names): then ``fingerprint`` alone says when."""
    folder = TOOL_VENVS / name
    named = [] if callable(requirements) else list(requirements)
    wanted = hashlib.sha256("\n".join([sys.version, fingerprint, *named]).encode()).hexdigest()
    stamp = folder / "tool-installed"
    TOOL_VENVS.mkdir(exist_ok=True)
    with open(TOOL_VENVS / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest on this checkout may be building it
        if stamp.exists() and stamp.read_text() == wanted and (folder / "bin" / "python").exists():
            return folder / "bin"
        started = time.monotonic()
        shutil.rmtree(folder, ignore_errors=True)
        requirements = list(requirements() if callable(requirements) else requirements)
        done = _install(folder, requirements, timeout)
        if done.returncode != 0:
            raise RuntimeError(f"installing {' '.join(requirements)} into {folder} failed:\n"
                               f"{done.stderr[-3000:]}")
        stamp.write_text(wanted)
        print(f"\n[{name}: environment built in {time.monotonic() - started:.0f} s]",
              file=sys.stderr)
    return folder / "bin"


def uv() -> Optional[str]:
    """uv, when it is at hand: ``RACKWAVE_UV``, beside this Python (``.venv`` has it: the
    Makefile installs it first), or on ``PATH``. None means pip."""
    named = os.environ.get("RACKWAVE_UV")
    beside = Path(sys.executable).parent / "uv"
    return named or (str(beside) if beside.exists() else shutil.which("uv"))


def _install(folder: Path, requirements: List[str],
             timeout: float) -> "subprocess.CompletedProcess[str]":
    """A new environment in ``folder`` with ``requirements`` installed: by uv when at hand
    (it downloads and unpacks in parallel, and its cache serves the packages the environments
    share, dlt first of all: the same resolution as pip's, several times sooner), else by pip.
    Neither compiles bytecode: the first import writes it."""
    python = str(folder / "bin" / "python")
    installer = uv()
    if installer:
        subprocess.run([installer, "venv", "--quiet", "--python", sys.executable, str(folder)],
                       check=True)
        command = [installer, "pip", "install", "--quiet", "--python", python, *requirements]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        command = [python, "-m", "pip", "install", "--quiet", "--no-compile",
                   "--disable-pip-version-check", *requirements]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def recipe_venv(extra: str) -> Path:
    """The bin folder of `.venv-recipes/<extra>`: a virtual environment with the project installed
    with one extra, built if missing or made from another pyproject.toml."""
    pyproject = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    return tool_venv(extra, ["-e", f"{REPO}[{extra}]"], fingerprint=pyproject,
                     timeout=INSTALL_AND_RUN_TIMEOUT)


def installed_venv(extra: str) -> Path:
    """The bin folder of `.venv-recipes/<extra>`: the project installed as a user installs it,
    from its wheel with one extra (`pip install rackwave_source-*.whl[extra]`), never from the
    checkout. The sdist and the wheel are built from the checkout as `python -m build` builds
    them (the wheel from the sdist), again whenever a packaged file changed."""
    def built_wheel() -> List[str]:
        out = TOOL_VENVS / "dist"
        shutil.rmtree(out, ignore_errors=True)
        done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                               str(out), str(REPO)], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"python -m build failed:\n{done.stderr[-3000:]}")
        shutil.rmtree(REPO / "build", ignore_errors=True)
        (wheel,) = out.glob("*.whl")
        return [f"{wheel}[{extra}]"]

    return tool_venv(extra, built_wheel, fingerprint=packaged_fingerprint(),
                     timeout=INSTALL_AND_RUN_TIMEOUT)


def packaged_fingerprint() -> str:
    digest = hashlib.sha256()
    for top in PACKAGED:
        paths = [REPO / top] if (REPO / top).is_file() else sorted((REPO / top).rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts and \
                    path.suffix in (".py", ".toml", ".yml", ".sql", ".typed"):
                digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    return digest.hexdigest()


def build(names: Sequence[str]) -> None:
    """Builds the named environments, all at once (``make setup-dev``)."""
    from emulators.bigquery import REQUIREMENTS as BIGQUERY
    from emulators.fake_snowflake import EMULATOR_REQUIREMENTS as SNOWFLAKE

    builders: Dict[str, Callable[[], Path]] = {
        "bigquery-emulator": lambda: tool_venv("bigquery-emulator", BIGQUERY),
        "fakesnow": lambda: tool_venv("fakesnow", SNOWFLAKE),
        "airflow": lambda: recipe_venv("airflow"),
        "dagster": lambda: recipe_venv("dagster"),
        "dbt": lambda: installed_venv("dbt"),  # the wheel: needs `build`, from .venv
    }
    unknown = set(names) - set(builders)
    if unknown:
        raise SystemExit(f"unknown environments {sorted(unknown)}; known: {sorted(builders)}")
    with ThreadPoolExecutor(len(names) or 1) as pool:
        built: List[Path] = list(pool.map(lambda name: builders[name](), names))
    print("\n".join(str(path) for path in built))


if __name__ == "__main__":
    build(sys.argv[1:])
