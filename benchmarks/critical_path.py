"""Where a first load's wall time goes, step by step, beside the raw download: the critical path.

``run.py`` gives one figure per contender; this splits the connector's run the way a user's
clock sees it. The raw download and the command (``python -m pipelines.rackwave_pipeline``, one
process each, a fresh DuckDB file and ``DLT_DATA_DIR``) alternate ``--rounds`` times against one
sandbox. In the command's process, marks are taken at:

* **imports**: from the interpreter's start (the child's ``time.perf_counter`` at its first line,
  plus Python's own start-up as the parent saw it) to the command's module being imported;
* **before the first request**: the command's setup, dlt's pipeline and its destination sync
  (the state restore opens the warehouse), up to the first page request;
* **extract**: dlt's extract step, every page request inside it;
* **normalize** and **load**: dlt's steps;
* **after the load**: the command's summary and exit.

The raw download's wall and CPU seconds are printed beside them: what the same pages cost with
nothing but ``requests`` and ``json``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/critical_path.py --leads 100000 --contacts 10000 --latency-ms 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
STEPS = ("imports", "before the first request", "extract", "normalize", "load", "after the load")


def child(base_url: str, duckdb_file: str) -> None:
    """Runs the command in this process with marks around dlt's steps; prints them as JSON."""
    started = time.perf_counter()
    marks: Dict[str, float] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, time.perf_counter() - started)

    sys.path.insert(0, str(REPO))
    import urllib3

    send = urllib3.HTTPConnectionPool.urlopen

    def timed_urlopen(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        mark("first request")
        return send(self, *args, **kwargs)

    urllib3.HTTPConnectionPool.urlopen = timed_urlopen  # type: ignore[method-assign]
    import pipelines.rackwave_pipeline as command
    from dlt.pipeline.pipeline import Pipeline

    mark("imported")
    for step in ("extract", "normalize", "load"):
        original = getattr(Pipeline, step)

        def wrapped(self, *args, _original=original, _step=step, **kwargs):  # type: ignore[no-untyped-def]
            mark(f"{_step} start")
            result = _original(self, *args, **kwargs)
            marks[f"{_step} end"] = time.perf_counter() - started
            return result

        setattr(Pipeline, step, wrapped)
    code = command.main(["--base-url", base_url, "--duckdb-file", duckdb_file,
                         "--pipeline-name", "critical_path"])
    mark("returned")
    print(json.dumps({"code": code, "marks": marks}))


def timed_child(cmd: List[str], env: Dict[str, str]) -> Dict[str, object]:
    """Runs one process; its wall seconds, exit code and standard output."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    out, _ = proc.communicate()
    wall = time.perf_counter() - started
    return {"wall": wall, "out": out, "code": proc.returncode}


def steps_of(marks: Dict[str, float], wall: float) -> Dict[str, float]:
    """The marks as the duration of each step of ``STEPS``."""
    first = min(marks.get("first request", marks["extract start"]), marks["extract start"])
    interpreter = wall - marks["returned"]  # Python's start-up and exit, seen from outside
    return {
        "imports": marks["imported"] + interpreter,
        "before the first request": first - marks["imported"],
        "extract": marks["extract end"] - first,
        "normalize": marks["normalize end"] - marks["normalize start"],
        "load": marks["load end"] - marks["load start"],
        "after the load": marks["returned"] - marks["load end"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("BASE_URL", "DUCKDB_FILE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    sys.path.insert(0, str(BENCH))
    from run import SandboxProcess, _env

    work = Path(tempfile.mkdtemp(prefix="rackwave-path-"))
    sandbox = SandboxProcess(work, args.leads, args.contacts, args.latency_ms, None)
    try:
        base_url = sandbox.wait_ready(600)
        print(f"{args.leads:,} leads + {args.contacts:,} contacts at {args.latency_ms:g} ms; "
              "seconds of wall time")
        print(f"{'raw':>6}  {'command':>7}  " + "  ".join(f"{s:>{max(7, len(s))}}" for s in STEPS))
        for round_ in range(args.rounds):
            home = work / f"round{round_}"
            home.mkdir()
            env = _env({"DLT_DATA_DIR": str(home / "dlt")})
            raw = timed_child([sys.executable, str(BENCH / "raw_download.py"), "--base-url",
                               base_url, "--out", str(home / "ids.tsv")], env)
            run = timed_child([sys.executable, __file__, "--child", base_url,
                               str(home / "bench.duckdb")], env)
            result = json.loads(str(run["out"]).strip().splitlines()[-1])
            if run["code"] != 0 or result["code"] != 0:
                raise SystemExit(f"the command failed (exit {result['code']})")
            steps = steps_of(result["marks"], float(run["wall"]))  # type: ignore[arg-type]
            print(f"{raw['wall']:6.2f}  {run['wall']:7.2f}  "
                  + "  ".join(f"{steps[s]:>{max(7, len(s))}.2f}" for s in STEPS), flush=True)
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
