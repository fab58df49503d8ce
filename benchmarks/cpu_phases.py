"""The connector's CPU seconds per 100k rows, phase by phase: where a first load spends the CPU
it shares with the API on a 2-core machine.

One first load (a full scan) of the sandbox into a new DuckDB file, in this process, as the
README's plain dlt code does it, with dlt's three steps timed apart (``getrusage``: every thread
of the process, user + system). The extract step is broken down further with yappi (CPU clock,
every thread), by the module that spends it:

* **HTTP**: urllib3, http.client, sockets, the client, its auth and throttle;
* **JSON -> Arrow**: ``decode.py`` and pyarrow's JSON reader and casts;
* **Arrow shaping**: ``arrow_shape.py``, privacy, quarantine sorting;
* **coverage bookkeeping**: ``scan.py``, ``coverage.py``, ``paging.py``, ``rereads.py``, the
  cursor, the verdict (``verdicts.py``) and the deletions a full scan settles;
* **dlt extract**: dlt writing the items as parquet files, and anything else in extract.

yappi's own overhead inflates pure-Python code, so the breakdown's shares, not its absolute
seconds, are the figures to read; the step totals come from ``getrusage`` without yappi.

Usage (from the repository root)::

    .venv/bin/python benchmarks/cpu_phases.py --leads 100000 --contacts 10000 --latency-ms 20
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from run import SandboxProcess  # noqa: E402

GROUPS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("coverage bookkeeping", ("rackwave_source/scan", "rackwave_source/coverage",
                              "rackwave_source/paging", "rackwave_source/rereads",
                              "rackwave_source/cursor", "rackwave_source/verdicts",
                              "rackwave_source/deletions", "rackwave_source/reading")),
    ("JSON -> Arrow", ("rackwave_source/decode", "pyarrow/json", "pyarrow/compute")),
    ("Arrow shaping", ("rackwave_source/arrow_shape", "rackwave_source/privacy",
                       "rackwave_source/quarantine", "rackwave_source/drift")),
    ("HTTP", ("urllib3", "http/client", "socket", "ssl", "rackwave_source/client",
              "rackwave_source/auth", "rackwave_source/throttle", "rackwave_source/endpoint")),
)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(step: Callable[[], object]) -> Tuple[float, float]:
    """(CPU seconds, wall seconds) of ``step``."""
    c, w = cpu(), time.monotonic()
    step()
    return cpu() - c, time.monotonic() - w


def group_of(module: str) -> str:
    for name, needles in GROUPS:
        if any(n in module for n in needles):
            return name
    return "dlt extract and the rest"


def extract_breakdown(stats: object) -> Counter:
    """yappi's function stats -> CPU seconds by group (each function's own time, ``tsub``)."""
    out: Counter = Counter()
    for fn in stats:  # type: ignore[attr-defined]
        out[group_of(fn.module.replace("\\", "/"))] += fn.tsub
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--no-breakdown", action="store_true", help="step totals only")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rackwave-cpu-"))
    os.environ.update({"DLT_DATA_DIR": str(work / "dlt"), "RUNTIME__DLTHUB_TELEMETRY": "false"})
    sandbox = SandboxProcess(work, args.leads, args.contacts, args.latency_ms, None)
    try:
        base_url = sandbox.wait_ready(600)
        import dlt

        from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
        from rackwave_source import rackwave_source

        rows = args.leads + args.contacts
        results: Dict[str, Tuple[float, float]] = {}
        breakdown: Counter = Counter()
        for run in ("plain", "profiled") if not args.no_breakdown else ("plain",):
            pipeline = dlt.pipeline(f"cpu_{run}", destination=dlt.destinations.duckdb(
                str(work / f"{run}.duckdb")), dataset_name="rackwave",
                pipelines_dir=str(work / "pipelines"))
            source = rackwave_source(base_url=base_url, client_id=DEMO_CLIENT_ID,
                                     client_secret=DEMO_CLIENT_SECRET)
            if run == "plain":
                results["extract"] = timed(lambda: pipeline.extract(source))
                results["normalize"] = timed(pipeline.normalize)
                results["load"] = timed(pipeline.load)
                continue
            import yappi

            yappi.set_clock_type("cpu")
            yappi.start(builtins=True)
            pipeline.extract(source)
            yappi.stop()
            breakdown = extract_breakdown(yappi.get_func_stats())
        per = 100_000 / rows
        print(f"{rows:,} rows at {args.latency_ms:g} ms: CPU seconds per 100k rows (wall s)")
        for step, (c, w) in results.items():
            print(f"  {step:<10} {c * per:6.2f} CPU s   ({w:.2f} s wall)")
        total = sum(c for c, _ in results.values())
        print(f"  {'total':<10} {total * per:6.2f} CPU s")
        if breakdown:
            whole = sum(breakdown.values()) or 1.0
            extract_cpu = results["extract"][0]
            print("extract, by concern (share of yappi's CPU time; seconds scaled to the step):")
            for name, seconds in breakdown.most_common():
                share = seconds / whole
                print(f"  {name:<26} {share:6.1%}  ~{share * extract_cpu * per:5.2f} CPU s")
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
