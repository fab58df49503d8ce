"""Command line: ``python -m rackwave_sandbox --port 8765 --leads 10000``.

Runs until SIGINT or SIGTERM and then exits 0, so benchmarks and CI can start
it as a separate process and stop it cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from types import FrameType

from rackwave_sandbox.config import SandboxConfig
from rackwave_sandbox.server import Sandbox


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments (defaults mirror :class:`SandboxConfig`)."""
    d = SandboxConfig()
    p = argparse.ArgumentParser(prog="python -m rackwave_sandbox", description="Run the Rackwave API sandbox.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--leads", type=int, default=d.leads)
    p.add_argument("--contacts", type=int, default=d.contacts)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--token-ttl", type=float, default=d.token_ttl)
    p.add_argument("--latency-ms", type=float, default=d.latency_ms)
    p.add_argument("--rate-limit", type=float, default=None, help="requests per second (default unlimited)")
    p.add_argument("--rate-burst", type=int, default=None)
    p.add_argument("--error-rate", type=float, default=d.error_rate)
    p.add_argument("--drop-rate", type=float, default=d.drop_rate)
    p.add_argument("--churn-creates", type=float, default=d.churn_creates,
                   help="records created per list request in the listed collection (2.5 -> 2 or 3)")
    p.add_argument("--churn-deletes", type=float, default=d.churn_deletes,
                   help="records deleted per list request, uniformly at random")
    p.add_argument("--churn-on-filtered", action=argparse.BooleanOptionalAction, default=d.churn_on_filtered,
                   help="also churn on status=/search= lists")
    p.add_argument("--count-lag", type=int, default=d.count_lag,
                   help="meta.total trails the data by this many records")
    p.add_argument("--page-cap", type=int, default=d.page_cap,
                   help="serve at most this many records per page, whatever per_page asks (and say so)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Start the server in a background thread and wait for a signal."""
    args = build_parser().parse_args(argv)
    try:
        cfg = SandboxConfig(
            leads=args.leads,
            contacts=args.contacts,
            seed=args.seed,
            token_ttl=args.token_ttl,
            latency_ms=args.latency_ms,
            rate_limit=args.rate_limit,
            rate_burst=args.rate_burst,
            error_rate=args.error_rate,
            drop_rate=args.drop_rate,
            churn_creates=args.churn_creates,
            churn_deletes=args.churn_deletes,
            churn_on_filtered=args.churn_on_filtered,
            count_lag=args.count_lag,
            page_cap=args.page_cap,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    started = time.perf_counter()
    server = Sandbox(cfg).serve(host=args.host, port=args.port)
    print(f"Rackwave sandbox listening on {server.base_url}", flush=True)
    print(f"  data: {cfg.leads} leads, {cfg.contacts} contacts (seed {cfg.seed}), ready in "
          f"{time.perf_counter() - started:.2f}s", flush=True)
    print(f"  client_id:     {cfg.client_id}", flush=True)
    print(f"  client_secret: {cfg.client_secret}", flush=True)
    print(f"  admin:         {server.root_url}/_admin/stats", flush=True)
    if cfg.churn_creates or cfg.churn_deletes or cfg.count_lag:
        where = "list request" if cfg.churn_on_filtered else "unfiltered list request"
        print(f"  churn:         +{cfg.churn_creates:g}/-{cfg.churn_deletes:g} records per {where}, "
              f"count lag {cfg.count_lag}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print("Rackwave sandbox stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
