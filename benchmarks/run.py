"""One command: start the sandbox, run raw download, dlt ``rest_api`` and this connector side by side.

Each contender runs as its own process against the same sandbox data, one after the other, with
the sandbox's counters reset before each. For every contender it reports wall time, rows/s, the
process's own peak RSS (``os.wait4``), requests and 429s (counted by the sandbox, so every
contender is measured the same way), and whether the ids it loaded equal the sandbox's. Then
the ratios connector/peer and connector/raw and the issue's targets.

Usage (from the repository root)::

    /work/venv/bin/python benchmarks/run.py --leads 100000 --contacts 10000 --latency-ms 20
    /work/venv/bin/python benchmarks/run.py --only connector --rate-limit 50
    /work/venv/bin/python benchmarks/run.py --only connector --incremental-k 250
    /work/venv/bin/python benchmarks/run.py --only connector --connector-env SOURCES__RACKWAVE__CONCURRENCY=8

See ``benchmarks/README.md`` for what is measured and the latest results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Dict, List, Optional, Sequence, Set, Tuple

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(REPO))

from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, AdminClient  # noqa: E402

CONTENDERS: Tuple[str, ...] = ("raw", "peer", "connector")
KINDS: Tuple[str, ...] = ("leads", "contacts")
DATASET = "rackwave"
LISTENING = re.compile(r"listening on (http://\S+/v1)")
# The targets, printed next to the figures.
TARGETS = {
    "connector/peer rows/s": ">= 12x at 20 ms, >= 10x at 0 ms",
    "connector/raw rows/s": ">= 60% at 20 ms",
    "rate limit 50 req/s": ">= 90% of 5,000 rows/s, <= 2% 429s, every row loaded",
    "incremental": "<= ceil(k/100)+1 GET /v1/leads",
    "peak RSS": "< 400 MB, within 25% between 100k and 1M leads",
    "no-op run (--noop)": "connector wall <= peer's (newest first), peak RSS within 25% of it",
}


@dataclass
class Result:
    """One contender's run, as printed and written to ``--json``."""

    name: str
    returncode: int
    wall_s: float
    rows: int
    rows_per_s: float
    peak_rss_mb: float
    requests: int
    http_429: int
    ids_ok: bool
    ids_detail: str
    leads_requests: int = 0
    extra: Dict[str, object] = field(default_factory=dict)
    cpu_s: float = 0.0  # user + system CPU seconds of the contender's process


# -- the sandbox ---------------------------------------------------------------------------------
class SandboxProcess:
    """The sandbox as a child process; started on a free port, stopped with SIGTERM.

    ``--port 0`` lets the OS pick the port and the sandbox prints the URL it got, so there is no
    race between finding a free port and binding it.
    """

    def __init__(self, workdir: Path, leads: int, contacts: int, latency_ms: float,
                 rate_limit: Optional[float]) -> None:
        cmd = [sys.executable, "-m", "rackwave_sandbox", "--port", "0", "--leads", str(leads),
               "--contacts", str(contacts), "--latency-ms", str(latency_ms)]
        if rate_limit is not None:
            cmd += ["--rate-limit", str(rate_limit)]
        self._stderr = open(workdir / "sandbox.stderr.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=_env({}), stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        # Drains stdout for the sandbox's lifetime so a full pipe can never block it.
        threading.Thread(target=self._pump, daemon=True).start()
        self.base_url = ""

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_ready(self, timeout: float) -> str:
        """Blocks until the sandbox prints its URL (data generation takes ~3 s per 100k leads)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"sandbox not ready after {timeout:.0f}s") from None
            if line is None:
                raise RuntimeError(f"sandbox exited with {self.proc.wait()} before it was ready")
            match = LISTENING.search(line)
            if match:
                self.base_url = match.group(1)
                return self.base_url

    @property
    def root_url(self) -> str:
        """Server root for the admin API (the base URL without ``/v1``)."""
        return self.base_url[: -len("/v1")]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 10 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


# -- running one contender -----------------------------------------------------------------------
def _env(extra: Dict[str, str]) -> Dict[str, str]:
    """The environment of every child: repo importable, telemetry off, demo credentials."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    env["SOURCES__RACKWAVE__CLIENT_ID"] = DEMO_CLIENT_ID
    env["SOURCES__RACKWAVE__CLIENT_SECRET"] = DEMO_CLIENT_SECRET
    env.update(extra)
    return env


def run_child(cmd: List[str], cwd: Path, env: Dict[str, str], log: Path,
              timeout: float) -> Tuple[int, float, float]:
    """Runs one contender and returns (exit code, wall seconds, peak RSS in MB)."""
    code, wall, rss, _ = run_child_measured(cmd, cwd, env, log, timeout)
    return code, wall, rss


def run_child_measured(cmd: List[str], cwd: Path, env: Dict[str, str], log: Path,
                       timeout: float) -> Tuple[int, float, float, float]:
    """Runs one contender and returns (exit code, wall seconds, peak RSS in MB, CPU seconds).

    ``os.wait4`` on the child's pid returns its own ``ru_maxrss`` (KiB on Linux; the maximum over
    the child and any process it waited for, never the harness or the sandbox), which
    ``resource.getrusage(RUSAGE_CHILDREN)`` could not separate from earlier children. Wall time
    includes interpreter start-up and imports: that is what a user waits for too.
    """
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    return proc.returncode, wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def sandbox_counts(admin: AdminClient) -> Tuple[int, int, int]:
    """(all /v1 requests, 429 answers, GET /v1/leads requests) since the last reset."""
    stats = admin.stats()
    too_many = sum(int(per.get("429", 0)) for per in stats["statuses"].values())
    return int(stats["total"]), too_many, int(stats["requests"].get("GET /v1/leads", 0))


def compare_ids(expected: Dict[str, List[str]], got: Dict[str, List[str]]) -> Tuple[bool, str, int]:
    """Set equality per resource plus a duplicate check; returns (ok, detail, distinct rows)."""
    problems: List[str] = []
    rows = 0
    for kind in KINDS:
        want: Set[str] = set(expected[kind])
        have_list = got.get(kind, [])
        have = set(have_list)
        rows += len(have)
        missing, extra, dups = len(want - have), len(have - want), len(have_list) - len(have)
        if missing or extra or dups:
            problems.append(f"{kind}: {missing} missing, {extra} extra, {dups} duplicated")
    return not problems, "; ".join(problems) or "all ids, no duplicates", rows


def duckdb_ids(path: Path) -> Dict[str, List[str]]:
    """Every ``id`` of ``rackwave.leads`` and ``rackwave.contacts`` in a DuckDB file."""
    import duckdb

    if not path.exists():
        return {}
    with duckdb.connect(str(path), read_only=True) as con:
        out: Dict[str, List[str]] = {}
        for kind in KINDS:
            try:
                out[kind] = [row[0] for row in con.execute(f"SELECT id FROM {DATASET}.{kind}").fetchall()]
            except duckdb.Error:
                out[kind] = []
        return out


def file_ids(path: Path) -> Dict[str, List[str]]:
    """The ids the raw download wrote, one ``kind<TAB>id`` per line."""
    out: Dict[str, List[str]] = {kind: [] for kind in KINDS}
    if path.exists():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                kind, _, value = line.rstrip("\n").partition("\t")
                out.setdefault(kind, []).append(value)
    return out


class Bench:
    """Runs contenders against one sandbox and collects their results."""

    def __init__(self, admin: AdminClient, base_url: str, workdir: Path,
                 connector_env: Dict[str, str], timeout: float) -> None:
        self.peer_args: List[str] = []
        self.admin = admin
        self.base_url = base_url
        self.workdir = workdir
        self.connector_env = connector_env
        self.timeout = timeout

    def expected(self) -> Dict[str, List[str]]:
        """The sandbox's ids right now (the truth every contender is checked against)."""
        return {kind: self.admin.ids(kind) for kind in KINDS}

    def command(self, name: str, home: Path) -> Tuple[List[str], Path, Dict[str, str], Path]:
        """(argv, cwd, env, output file) of one contender.

        The connector runs from the repository root so its shipped ``.dlt/config.toml`` applies,
        as for a user of the repository; the peer runs from its own empty folder so it gets dlt's
        defaults. Each has its own ``DLT_DATA_DIR``, so pipeline state starts empty.
        """
        env = {"DLT_DATA_DIR": str(home / "dlt")}
        if name == "raw":
            out = home / "ids.tsv"
            return ([sys.executable, str(BENCH / "raw_download.py"), "--base-url", self.base_url,
                     "--out", str(out)], home, _env(env), out)
        if name == "peer":
            out = home / "peer.duckdb"
            return ([sys.executable, str(BENCH / "peer_rest_api.py"), "--base-url", self.base_url,
                     "--duckdb-file", str(out), *self.peer_args], home, _env(env), out)
        out = home / "bench.duckdb"
        return ([sys.executable, "-m", "pipelines.rackwave_pipeline", "--base-url", self.base_url,
                 "--duckdb-file", str(out), "--pipeline-name", "bench"], REPO,
                _env({**env, **self.connector_env}), out)

    def run(self, name: str, label: Optional[str] = None, home: Optional[Path] = None) -> Result:
        """Resets the sandbox's counters, runs one contender, measures and verifies it."""
        home = home or self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        cmd, cwd, env, out = self.command(name, home)
        log = home / f"{label or name}.log".replace(" ", "_")
        expected = self.expected()
        self.admin.reset_stats()
        print(f"running {label or name} ...", flush=True)
        code, wall, rss, cpu = run_child_measured(cmd, cwd, env, log, self.timeout)
        requests_, too_many, leads_requests = sandbox_counts(self.admin)
        got = file_ids(out) if name == "raw" else duckdb_ids(out)
        ok, detail, rows = compare_ids(expected, got)
        if code != 0:
            ok, detail = False, f"exit code {code}; see {log}"
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print("\n".join(f"    | {line}" for line in tail), flush=True)
        return Result(label or name, code, wall, rows, rows / wall if wall else 0.0, rss,
                      requests_, too_many, ok, detail, leads_requests, cpu_s=cpu)

    def noop(self, repeats: int) -> List[Result]:
        """A scheduled run with nothing new: each of the peer (told the API lists newest first,
        so it stops at the cursor) and the connector loads once, then both run ``repeats`` more
        times on the same state and file with nothing new, alternating (peer, connector, peer,
        ...), so that a burst of load from elsewhere on the machine hits both alike. Each is
        reported by its median run (wall, CPU and peak RSS are each the median of the runs)."""
        self.peer_args = ["--newest-first"]
        names = ("peer", "connector")
        homes = {name: self.workdir / f"{name}-noop" for name in names}
        for name in names:
            self.run(name, label=f"{name} noop setup", home=homes[name])
        runs: Dict[str, List[Result]] = {name: [] for name in names}
        for _ in range(repeats):
            for name in names:
                runs[name].append(self.run(name, label=f"{name} no-op", home=homes[name]))
        self.peer_args = []
        return [_median_run(runs[name]) for name in names]

    def incremental(self, k: int) -> Result:
        """Inserts ``k`` leads after a full load and runs the connector again on the same state.

        The new leads are the newest, so an incremental run needs their ceil(k/100) pages plus
        at most one page to find the old cursor: more means it re-reads old data.
        """
        self.admin.insert("leads", count=k)
        result = self.run("connector", label=f"connector +{k} incr", home=self.workdir / "connector")
        bound = math.ceil(k / 100) + 1
        result.extra = {"k": k, "leads_pages": result.leads_requests, "bound": bound,
                        "within_bound": result.leads_requests <= bound}
        return result


def _median_run(runs: List[Result]) -> Result:
    """The run of median wall time, carrying the median CPU and peak RSS of all runs and every
    run's figures (``extra``); every run must have loaded exactly the sandbox's ids."""
    ordered = sorted(runs, key=lambda r: r.wall_s)
    median = ordered[(len(ordered) - 1) // 2]
    median.cpu_s = statistics.median(r.cpu_s for r in runs)
    median.peak_rss_mb = statistics.median(r.peak_rss_mb for r in runs)
    median.ids_ok = all(r.ids_ok for r in runs)
    median.extra = {"noop_walls": [round(r.wall_s, 2) for r in ordered],
                    "noop_cpu": sorted(round(r.cpu_s, 2) for r in runs),
                    "noop_rss": sorted(round(r.peak_rss_mb, 1) for r in runs)}
    return median


# -- output --------------------------------------------------------------------------------------
def render(results: Sequence[Result]) -> str:
    """The results as a fixed-width table."""
    head = f"{'contender':<22}{'wall s':>9}{'rows':>9}{'rows/s':>10}{'peak RSS MB':>13}" \
           f"{'requests':>10}{'429s':>7}  ids"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.name:<22}{r.wall_s:>9.2f}{r.rows:>9}{r.rows_per_s:>10.0f}"
                     f"{r.peak_rss_mb:>13.1f}{r.requests:>10}{r.http_429:>7}  "
                     f"{'OK' if r.ids_ok else 'FAIL'} ({r.ids_detail})")
    return "\n".join(lines)


def ratios(results: Sequence[Result]) -> Dict[str, float]:
    """connector/peer and connector/raw of rows/s, for the contenders that ran."""
    by = {r.name: r for r in results}
    out: Dict[str, float] = {}
    conn = by.get("connector")
    for other in ("peer", "raw"):
        if conn and other in by and by[other].rows_per_s:
            out[f"connector/{other}"] = conn.rows_per_s / by[other].rows_per_s
    return out


def git_commit() -> str:
    """The repository's short HEAD (the connector's code may have uncommitted changes on top)."""
    try:
        sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "rackwave_source", "pipelines"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description="Benchmark raw download, dlt rest_api and the connector.")
    p.add_argument("--leads", type=int, default=100_000)
    p.add_argument("--contacts", type=int, default=10_000)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--rate-limit", type=float, default=None, help="sandbox limit in requests/s")
    p.add_argument("--only", default=",".join(CONTENDERS), help="subset of raw,peer,connector")
    p.add_argument("--incremental-k", type=int, default=None,
                   help="after the connector's full load, insert K leads and run it again")
    p.add_argument("--noop", type=int, default=None, metavar="N",
                   help="then N runs with nothing new each, peer (newest first) and connector "
                        "alternating; reported by their medians")
    p.add_argument("--connector-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the connector (repeatable)")
    p.add_argument("--timeout", type=float, default=3600.0, help="per contender, seconds")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.only) - set(CONTENDERS)
    if unknown:
        p.error(f"--only: unknown contender(s) {sorted(unknown)}; choose from {CONTENDERS}")
    if args.incremental_k is not None and "connector" not in args.only:
        p.error("--incremental-k needs the connector in --only")
    for item in args.connector_env:
        if "=" not in item:
            p.error(f"--connector-env expects KEY=VALUE, got {item!r}")
    args.connector_env = dict(item.split("=", 1) for item in args.connector_env)
    return args


def _raise_interrupt(signum: int, frame: Optional[FrameType]) -> None:
    """SIGTERM behaves like Ctrl-C, so the ``finally`` blocks stop the sandbox."""
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Starts the sandbox, runs the contenders, prints and optionally saves the results."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    commit = git_commit()  # before the run: the code the contenders import
    workdir = Path(tempfile.mkdtemp(prefix="rackwave-bench-"))
    sandbox: Optional[SandboxProcess] = None
    results: List[Result] = []
    try:
        print(f"sandbox: {args.leads} leads, {args.contacts} contacts, {args.latency_ms} ms latency, "
              f"rate limit {args.rate_limit or 'none'}; work dir {workdir}", flush=True)
        sandbox = SandboxProcess(workdir, args.leads, args.contacts, args.latency_ms, args.rate_limit)
        sandbox.wait_ready(timeout=120 + args.leads / 10_000)
        admin = AdminClient(sandbox.root_url)
        bench = Bench(admin, sandbox.base_url, workdir, args.connector_env, args.timeout)
        for name in CONTENDERS:
            if name in args.only:
                results.append(bench.run(name))
        if args.incremental_k is not None:
            results.append(bench.incremental(args.incremental_k))
        if args.noop:
            results.extend(bench.noop(args.noop))
        admin.close()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if sandbox is not None:
            sandbox.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if git_commit() != commit:
        print(f"warning: the repository changed during the run (was {commit}, now {git_commit()})")
    print()
    print(f"{dt.date.today().isoformat()}, commit {commit}, {os.cpu_count()} cores, "
          f"{args.leads} leads + {args.contacts} contacts, latency {args.latency_ms} ms, "
          f"rate limit {args.rate_limit or 'none'}")
    print(render(results))
    rat = ratios(results)
    for key, value in rat.items():
        print(f"{key} rows/s: {value:.2f}x")
    noop = {r.name: r for r in results if r.name.endswith("no-op")}
    if len(noop) == 2:
        peer, conn = noop["peer no-op"], noop["connector no-op"]
        print(f"no-op, median of {len(conn.extra['noop_walls'])} alternating runs: connector "
              f"{conn.wall_s:.2f} s wall / {conn.cpu_s:.2f} s CPU / {conn.peak_rss_mb:.0f} MB, "
              f"peer {peer.wall_s:.2f} s / {peer.cpu_s:.2f} s / {peer.peak_rss_mb:.0f} MB: "
              f"wall {conn.wall_s / peer.wall_s:.2f}x, CPU {conn.cpu_s / peer.cpu_s:.2f}x, "
              f"RSS {conn.peak_rss_mb / peer.peak_rss_mb:.2f}x")
        print(f"  all walls: connector {conn.extra['noop_walls']} s, peer "
              f"{peer.extra['noop_walls']} s")
    for r in results:
        if r.extra and "k" in r.extra:
            verdict = "OK" if r.extra["within_bound"] else "OVER"
            print(f"incremental: {r.extra['leads_pages']} GET /v1/leads for k={r.extra['k']} "
                  f"(bound ceil(k/100)+1 = {r.extra['bound']}): {verdict}")
        if r.requests:
            print(f"{r.name}: 429 share {100.0 * r.http_429 / r.requests:.2f}%")
    print("targets: " + "; ".join(f"{k}: {v}" for k, v in TARGETS.items()))
    if args.json:
        args.json.write_text(json.dumps({
            "date": dt.datetime.now().isoformat(timespec="seconds"), "commit": commit,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
            "config": {"leads": args.leads, "contacts": args.contacts, "latency_ms": args.latency_ms,
                       "rate_limit": args.rate_limit, "connector_env": args.connector_env},
            "results": [asdict(r) for r in results], "ratios": rat, "targets": TARGETS,
        }, indent=2))
        print(f"wrote {args.json}")
    return 0 if results and all(r.ids_ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
