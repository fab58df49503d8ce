"""`rackwave push leads` against a plain sequential loop of POSTs, side by side in one run.

Each contender creates the same N new leads (distinct emails per contender) in one sandbox
started with the given latency, as its own process. Reported per contender: wall time (the
whole process, imports included), peak RSS, the POSTs and lookups the sandbox counted, and
whether every row became exactly one lead. Then the ratio and the issue's targets: >= 10x the
loop, at most one POST per valid row plus one lookup per ambiguous answer.

Usage (from the repository root)::

    .venv/bin/python benchmarks/push.py --rows 10000 --latency-ms 20
    .venv/bin/python benchmarks/push.py --rows 10000 --latency-ms 20 --lost-answers 50
    .venv/bin/python benchmarks/push.py --stream-rows 1000000   # peak RSS of a streamed push

The loop (``--contender loop``, run by this file in a child process) is what a user writes
first: one ``requests`` session, one token, a POST per row, in order.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, AdminClient  # noqa: E402
from run import _env, run_child  # noqa: E402

LISTENING = re.compile(r"listening on (http://\S+/v1)")
TARGETS = {"push/loop speed": ">= 10x", "requests": "<= 1 POST per valid row + 1 lookup per "
           "ambiguous answer"}


def rows(count: int, prefix: str) -> List[Dict[str, object]]:
    return [{"name": f"Bench Person {i}", "email": f"{prefix}.{i}@bench.example",
             "phone": f"+4477009{i:05d}", "source": "api", "tags": ["bench"]}
            for i in range(count)]


def loop(base_url: str, data_file: str) -> None:
    """The peer: a sequential loop of POSTs with one requests session."""
    import requests

    session = requests.Session()
    token = session.post(f"{base_url}/auth/token", json={
        "client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET,
        "grant_type": "client_credentials"}).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    for row in json.loads(Path(data_file).read_text()):
        session.post(f"{base_url}/leads", json=row).raise_for_status()


def start_sandbox(latency_ms: float) -> Tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rackwave_sandbox", "--port", "0", "--leads", "100",
         "--contacts", "10", "--latency-ms", str(latency_ms)],
        cwd=REPO, env=_env({}), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = LISTENING.search(line)
        if found:
            return proc, found.group(1)
    raise RuntimeError("the sandbox did not start")


def leads_by_email(admin: AdminClient, prefix: str) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for lead in admin.records("leads"):
        if lead["email"].startswith(prefix + "."):
            counts[lead["email"]] = counts.get(lead["email"], 0) + 1
    return counts


def run_contender(name: str, base_url: str, admin: AdminClient, count: int,
                  folder: Path) -> Dict[str, object]:
    data = rows(count, name)
    admin.reset_stats()
    if name == "loop":
        data_file = folder / "rows.json"
        data_file.write_text(json.dumps(data))
        cmd = [sys.executable, str(Path(__file__)), "--contender", "loop", "--base-url", base_url,
               "--data", str(data_file)]
    else:
        import duckdb

        with duckdb.connect(str(folder / "w.duckdb")) as con:
            con.execute("CREATE SCHEMA rackwave; CREATE TABLE rackwave.to_push (name VARCHAR, "
                        "email VARCHAR, phone VARCHAR, source VARCHAR, tags VARCHAR[])")
            con.executemany("INSERT INTO rackwave.to_push VALUES (?, ?, ?, ?, ?)",
                            [list(r.values()) for r in data])
        cmd = [sys.executable, "-m", "pipelines.rackwave_pipeline", "push", "leads",
               "--duckdb-file", str(folder / "w.duckdb"), "--base-url", base_url,
               "--query", "SELECT * FROM rackwave.to_push"]
    env = _env({"DLT_DATA_DIR": str(folder / "dlt")})
    code, wall, rss = run_child(cmd, folder, env, folder / f"{name}.log", timeout=3600)
    stats = admin.stats()["requests"]
    created = leads_by_email(admin, name)
    return {"contender": name, "exit": code, "wall_s": round(wall, 2), "peak_rss_mb": round(rss),
            "posts": int(stats.get("POST /v1/leads", 0)),
            "lookups": int(stats.get("GET /v1/leads", 0)),
            "exactly_once": len(created) == count and set(created.values()) == {1}}


def stream(count: int, base_url: str) -> Dict[str, object]:
    """``count`` rows (made by DuckDB, not Python) through a ``--dry-run`` push: reading in
    chunks, checking, duplicates, the journal's standing outcomes, everything but the sending.
    Wall time and peak RSS of the push process (``os.wait4``)."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="rackwave-push-stream-") as tmp:
        folder = Path(tmp)
        with duckdb.connect(str(folder / "w.duckdb")) as con:
            con.execute("CREATE SCHEMA rackwave")
            con.execute("CREATE TABLE rackwave.to_push AS SELECT 'Bench Person ' || i AS name, "
                        "'stream.' || i || '@bench.example' AS email, '+4477' || lpad(i::VARCHAR,"
                        " 8, '0') AS phone, 'api' AS source, ['bench'] AS tags "
                        f"FROM range({count}) t(i)")
        cmd = [sys.executable, "-m", "pipelines.rackwave_pipeline", "push", "leads", "--dry-run",
               "--json", "--duckdb-file", str(folder / "w.duckdb"), "--base-url", base_url,
               "--query", "SELECT * FROM rackwave.to_push"]
        env = _env({"DLT_DATA_DIR": str(folder / "dlt")})
        code, wall, rss = run_child(cmd, folder, env, folder / "stream.log", timeout=3600)
        text = (folder / "stream.log").read_text()
        report = json.loads(text[text.index("{"):]) if "{" in text else {}
    return {"contender": "push --dry-run (streamed)", "rows": count, "exit": code,
            "wall_s": round(wall, 2), "peak_rss_mb": round(rss),
            "read_chunks": report.get("read_chunks"), "would_send": report.get("would_send"),
            "target": "peak RSS <= 400 MB"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--lost-answers", type=int, default=0,
                        help="this many POSTs (from the 100th) store the lead, then lose the answer")
    parser.add_argument("--only", choices=["push", "loop"], help="run one contender")
    parser.add_argument("--stream-rows", type=int,
                        help="instead: this many rows through a --dry-run push, for peak RSS")
    parser.add_argument("--contender", choices=["loop"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.contender == "loop":
        loop(args.base_url, args.data)
        return 0
    proc, base_url = start_sandbox(args.latency_ms)
    admin = AdminClient(base_url[: -len("/v1")])
    if args.stream_rows:
        try:
            print(json.dumps(stream(args.stream_rows, base_url)), flush=True)
        finally:
            proc.terminate()
            proc.wait()
        return 0
    try:
        with tempfile.TemporaryDirectory(prefix="rackwave-push-bench-") as tmp:
            results = []
            for name in [args.only] if args.only else ["push", "loop"]:
                folder = Path(tmp) / name
                folder.mkdir()
                if args.lost_answers and name == "push":
                    admin.add_faults([{"kind": "drop_after", "method": "POST", "after": 100,
                                       "path": "/v1/leads", "count": args.lost_answers}])
                results.append(run_contender(name, base_url, admin, args.rows, folder))
                print(json.dumps(results[-1]), flush=True)
    finally:
        proc.terminate()
        proc.wait()
    if len(results) < 2:
        return 0
    push, peer = results
    print(json.dumps({"rows": args.rows, "latency_ms": args.latency_ms,
                      "push/loop speed": round(float(peer["wall_s"]) / float(push["wall_s"]), 2),  # type: ignore[arg-type]
                      "targets": TARGETS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
