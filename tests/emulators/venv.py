"""A virtual environment for a tool the tests run (not import), built on first use.

Like ``recipe_venv`` in ``tests/test_orchestrators.py``, but for packages that are not the
project: an emulator pins libraries (DuckDB 2, sqlglot 30.11) that dlt 1.31 cannot use, so it
cannot live in ``.venv``. The environment is built again when its requirements change (a hashed
stamp), and a file lock makes a second pytest on the same checkout wait instead of building it
twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence, Union

REPO = Path(__file__).resolve().parents[2]
TOOL_VENVS = REPO / ".venv-recipes"
#: a first build downloads and installs everything from the package registry
INSTALL_TIMEOUT = 600


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
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        requirements = list(requirements() if callable(requirements) else requirements)
        done = subprocess.run(
            [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
             "--disable-pip-version-check", *requirements],
            capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} into {folder} failed:\n"
                               f"{done.stderr[-3000:]}")
        stamp.write_text(wanted)
        print(f"\n[{name}: environment built in {time.monotonic() - started:.0f} s]",
              file=sys.stderr)
    return folder / "bin"
