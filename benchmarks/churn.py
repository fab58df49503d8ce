"""What a full scan costs in requests on a quiet and on a churning account, and whether it is exact.

For each account size and churn rate: the sandbox (in this process) is loaded once, quietly, into
a fresh DuckDB file; then every list request starts creating and deleting records (the sandbox's
``churn_creates`` / ``churn_deletes``: records created at the top, deleted anywhere) and the
connector runs a full scan. Reported per case:

* **pages**: ``meta.last_page`` when the scan began;
* **requests**: ``GET /v1/leads`` during the scan (the sandbox's count), and **extra** = requests
  minus pages, split into what the run record says: pages read again (**rereads**: page 1 at the
  end, holes) and deletion **lookups**; plus the churn the sandbox applied meanwhile;
* **exact**: every record that existed for the whole scan is loaded once, and no record the API
  still holds was removed.

    .venv/bin/python benchmarks/churn.py                    # 10k and 100k leads, four churn rates
    .venv/bin/python benchmarks/churn.py --leads 20000 --rates 0:0,2:2 --latency-ms 5

The point to read off: extra requests stay flat as the account grows and grow with the churn.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

from pipelines.rackwave_pipeline import run_pipeline  # noqa: E402
from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Sandbox, SandboxConfig  # noqa: E402


def one_case(leads: int, creates: float, deletes: float, latency_ms: float,
             concurrency: int) -> Dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rackwave-churn-"))
    os.environ["DLT_DATA_DIR"] = str(work / "dlt")
    server = Sandbox(SandboxConfig(leads=leads, contacts=0, latency_ms=latency_ms)).serve(port=0)
    try:
        def run(**kwargs: Any) -> Any:
            return run_pipeline(base_url=server.base_url, client_id=DEMO_CLIENT_ID,
                                client_secret=DEMO_CLIENT_SECRET, resources=["leads"],
                                duckdb_path=str(work / "rackwave_data.duckdb"),
                                pipelines_dir=str(work / "pipelines"),
                                source_options={"concurrency": concurrency}, **kwargs)

        run()
        import duckdb

        def loaded() -> List[str]:
            with duckdb.connect(str(work / "rackwave_data.duckdb"), read_only=True) as con:
                return [r[0] for r in con.execute("SELECT id FROM rackwave.leads").fetchall()]

        loaded_before = set(loaded())
        before = set(server.admin.ids("leads"))
        pages = -(-len(before) // 100)
        server.admin.reset_stats()
        server.admin.configure(churn_creates=creates, churn_deletes=deletes)
        result = run(full_scan=True)
        server.admin.configure(churn_creates=0, churn_deletes=0)
        stats = server.admin.stats()
        after = set(server.admin.ids("leads"))
        ids = loaded()
        record = result.pipeline.state["sources"]["rackwave"]["resources"]["leads"]["last_run"]
        requests = int(stats["requests"].get("GET /v1/leads", 0))
        churned = stats.get("churn", {}).get("leads", {})
        exact = (len(ids) == len(set(ids)) and (before & after) <= set(ids)
                 and (after & loaded_before) <= set(ids))
        return {
            "leads": leads, "creates": creates, "deletes": deletes, "pages": pages,
            "requests": requests, "extra": requests - pages, "rereads": record["rereads"],
            "lookups": record["lookups"], "holes": record["holes"], "quiet": record["quiet"],
            "created": churned.get("created", 0), "deleted": churned.get("deleted", 0),
            "exact": exact,
        }
    finally:
        server.stop()


def parse_rates(text: str) -> List[Tuple[float, float]]:
    return [(float(a), float(b)) for a, b in (pair.split(":") for pair in text.split(","))]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", default="10000,100000", help="account sizes, comma-separated")
    parser.add_argument("--rates", default="0:0,1:1,2:2,0:2",
                        help="creates:deletes per list request, comma-separated")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = [one_case(int(n), c, d, args.latency_ms, args.concurrency)
            for n in args.leads.split(",") for c, d in parse_rates(args.rates)]
    head = ("leads", "creates", "deletes", "pages", "requests", "extra", "rereads", "lookups",
            "holes", "created", "deleted", "quiet", "exact")
    print(" ".join(f"{h:>8}" for h in head))
    for row in rows:
        print(" ".join(f"{str(row[h]):>8}" for h in head))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(row["exact"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
