"""The connector's CPU seconds per 100k rows, phase by phase: where a first load spends the CPU
it shares with the API on a 2-core machine.

One first load (a full scan) of the sandbox into a new DuckDB file, in this process, as the
README's plain dlt code does it, with dlt's three steps timed apart (``getrusage``: every thread
of the process, user + system). The extract step is broken down further with yappi (CPU clock,
every thread), by the module that spends it:

* **HTTP**: a page's request and answer (``RackwaveClient.get``: urllib3, sockets, the token,
  the throttle, retries);
* **JSON -> Arrow**: decoding and checking the pages (``decode.py``, pyarrow's JSON reader);
* **coverage bookkeeping**: what a scan does with each page (``Scan._take``: repeats, holes,
  the cursor, the ids it remembers) and the run's verdict (``verdicts.py``);
* **batching**: gathering pages into dlt items, stamping ``_dlt_load_id``;
* **dlt writing**: dlt's extractors writing the items as parquet files;
* the rest: dlt's extract machinery, the worker threads and queues between them.

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

#: Each concern as the functions that enter it (their inclusive CPU time, ``ttot``; none of them
#: calls another of the list): what a page costs from its request to dlt's file.
CONCERNS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("HTTP (request, answer, retries)", ("RackwaveClient.get",)),
    ("JSON -> Arrow (decode, check)", ("PageReader.pages", "PageReader.page", "check_page")),
    ("coverage bookkeeping (scan, verdict)", ("Scan._take", "held_after_full_scan",
                                              "held_after_incremental", "judge")),
    ("batching and load ids", ("ArrowBatch.add", "ArrowBatch.flush", "with_load_id")),
    ("dlt writing parquet files", ("ArrowExtractor.write_items", "ObjectExtractor.write_items")),
)

def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(step: Callable[[], object]) -> Tuple[float, float]:
    """(CPU seconds, wall seconds) of ``step``."""
    c, w = cpu(), time.monotonic()
    step()
    return cpu() - c, time.monotonic() - w


def extract_breakdown(stats: object, total: float) -> Counter:
    """yappi's function stats -> CPU seconds by concern; the rest of ``total`` (yappi's sum of
    every function's own time) is dlt's extract machinery, threads and queues."""
    out: Counter = Counter()
    for fn in stats:  # type: ignore[attr-defined]
        for name, entries in CONCERNS:
            if fn.name in entries:
                out[name] += fn.ttot
    out["dlt's extract, threads, queues (the rest)"] = max(0.0, total - sum(out.values()))
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
            stats = yappi.get_func_stats()
            breakdown = extract_breakdown(stats, sum(fn.tsub for fn in stats))
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
