"""The limit: download every page of leads and contacts as fast as plain ``requests`` can.

Token exchange, then page 1 of each resource (to learn ``meta.last_page``), then every remaining
page of both resources on 8 threads (one ``requests.Session`` per thread, so each keeps its own
keep-alive connection), ``response.json()`` on each page and the ids collected. Nothing else: no
normalisation, no files, no destination. Whatever a connector does on top of this costs time,
so this is the ceiling a connector's rows/s is compared with.

Writes the downloaded ids, one ``kind<TAB>id`` line each, to ``--out`` so the harness can check
them against the sandbox. Credentials come from ``SOURCES__RACKWAVE__CLIENT_ID`` and
``SOURCES__RACKWAVE__CLIENT_SECRET``, like the connector's.

Usage::

    python benchmarks/raw_download.py --base-url http://127.0.0.1:8765/v1 --out ids.tsv
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

import requests

RESOURCES: Tuple[str, ...] = ("leads", "contacts")
PER_PAGE = 100
MAX_429_RETRIES = 1000  # generous: under a rate limit the run must complete, not give up
DEFAULT_RETRY_AFTER_S = 1.0

_local = threading.local()


def _session() -> requests.Session:
    """The calling thread's own session (``requests.Session`` is not thread-safe)."""
    session: Optional[requests.Session] = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


def get_token(base_url: str, client_id: str, client_secret: str) -> str:
    """Exchanges the client credentials for a bearer token (JSON body, as documented)."""
    resp = requests.post(
        f"{base_url}/auth/token",
        json={"client_id": client_id, "client_secret": client_secret, "grant_type": "client_credentials"},
        timeout=60,
    )
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def fetch_page(base_url: str, token: str, kind: str, page: int) -> Dict[str, Any]:
    """One page as parsed JSON; sleeps ``Retry-After`` and retries on 429 (minimal, but enough
    to finish under the sandbox's rate limit)."""
    url = f"{base_url}/{kind}"
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(MAX_429_RETRIES):
        resp = _session().get(url, params={"page": page, "per_page": PER_PAGE}, headers=headers, timeout=60)
        if resp.status_code == 429:
            try:
                delay = float(resp.headers.get("Retry-After", DEFAULT_RETRY_AFTER_S))
            except ValueError:
                delay = DEFAULT_RETRY_AFTER_S
            time.sleep(delay)
            continue
        resp.raise_for_status()
        result: Dict[str, Any] = resp.json()
        return result
    raise RuntimeError(f"{kind} page {page}: still rate limited after {MAX_429_RETRIES} attempts")


def download(base_url: str, client_id: str, client_secret: str, threads: int) -> Dict[str, List[str]]:
    """Every id of every resource, pages fetched concurrently.

    All remaining pages of both resources go into one pool so the threads stay busy across the
    boundary between leads and contacts.
    """
    token = get_token(base_url, client_id, client_secret)
    ids: Dict[str, List[str]] = {kind: [] for kind in RESOURCES}
    jobs: List[Tuple[str, int]] = []
    for kind in RESOURCES:
        first = fetch_page(base_url, token, kind, 1)
        ids[kind].extend(row["id"] for row in first["data"])
        jobs.extend((kind, page) for page in range(2, int(first["meta"]["last_page"]) + 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pages = pool.map(lambda job: (job[0], fetch_page(base_url, token, *job)), jobs)
        for kind, body in pages:
            ids[kind].extend(row["id"] for row in body["data"])
    return ids


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Downloads everything, writes the ids, prints one summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8765/v1")
    parser.add_argument("--out", required=True, help="file for the downloaded ids (kind<TAB>id)")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    client_id = os.environ["SOURCES__RACKWAVE__CLIENT_ID"]
    client_secret = os.environ["SOURCES__RACKWAVE__CLIENT_SECRET"]
    started = time.perf_counter()
    ids = download(args.base_url.rstrip("/"), client_id, client_secret, args.threads)
    elapsed = time.perf_counter() - started
    with open(args.out, "w", encoding="utf-8") as fh:
        for kind, values in ids.items():
            fh.writelines(f"{kind}\t{value}\n" for value in values)
    counts = ", ".join(f"{kind} {len(values)}" for kind, values in ids.items())
    print(f"raw download: {counts} in {elapsed:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
