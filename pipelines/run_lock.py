"""One run of a pipeline at a time: an OS file lock held for the run's whole duration.

Two runs of one pipeline share its working folder (load packages, local state) and, on DuckDB,
the warehouse file: overlapping, one of them failed halfway (a DuckDB lock message cut short, or a
load package the other had taken), after both had read the API. So the command takes
``<pipelines_dir>/<pipeline name>.lock`` before anything else, and a second run exits at once
with exit code 75, having touched nothing (no request, no destination, no change in the pipeline's
folder).

The lock is ``flock`` on that file, not the file's existence: the OS releases it when its holder
ends, however it ends (SIGKILL, a node reboot), so a stale file never blocks the next run. The
file holds the holder's pid and start time only to say who runs; its content is never trusted to
decide anything. It is not removed at the end: removing it would let a third run lock a new file
while a second still waits on the old one. ``flock`` works across processes of one machine
(local file systems; not across NFS clients): runs on several machines need the scheduler's own
"one at a time" setting.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, Optional, Tuple

from rackwave_source.exceptions import RackwaveTransientError

LOCK_SUFFIX = ".lock"
#: how long a run that found the lock taken waits for the holder to have written who it is (the
#: holder writes right after locking: a window of microseconds)
HOLDER_WAIT_S = 0.5
HOLDER_POLL_S = 0.01
UNKNOWN = "unknown"


class PipelineAlreadyRunning(RackwaveTransientError):
    """Another run of this pipeline holds its lock: this one did nothing (exit code 75)."""

    def __init__(self, pipeline_name: str, since: str, pid: str, path: str) -> None:
        self.pipeline_name = pipeline_name
        self.since = since
        self.pid = pid
        self.path = path
        super().__init__(
            f"pipeline `{pipeline_name}` is already running since {since} (pid {pid}); this run "
            f"did nothing and the next scheduled run will load. The lock is {path}, held while "
            "that process runs; the OS releases it when it ends, however it ends."
        )


def lock_path(pipelines_dir: str, pipeline_name: str) -> str:
    """The lock file beside the pipeline's working folder."""
    return os.path.join(pipelines_dir, pipeline_name + LOCK_SUFFIX)


@contextlib.contextmanager
def pipeline_lock(pipelines_dir: str, pipeline_name: str) -> Iterator[str]:
    """Holds the pipeline's lock for the body; raises ``PipelineAlreadyRunning`` at once when
    another process holds it. Yields the lock file's path."""
    path = lock_path(pipelines_dir, pipeline_name)
    os.makedirs(pipelines_dir, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            since, pid = holder(descriptor)
            raise PipelineAlreadyRunning(pipeline_name, since, pid, path) from None
        write_holder(descriptor)
        yield path
    finally:
        os.close(descriptor)  # releases the lock


def write_holder(descriptor: int) -> None:
    """Replaces whatever a previous holder left with this process's pid and start time."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    record = json.dumps({"pid": os.getpid(), "started_at": started}).encode()
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, record, 0)


def holder(descriptor: int) -> Tuple[str, str]:
    """The start time and pid the lock's holder wrote (``unknown`` if it has not written yet or
    the content is not ours)."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        record = read_record(descriptor)
        if record is not None or time.monotonic() >= deadline:
            break
        time.sleep(HOLDER_POLL_S)
    if record is None:
        return UNKNOWN, UNKNOWN
    return str(record.get("started_at", UNKNOWN)), str(record.get("pid", UNKNOWN))


def read_record(descriptor: int) -> Optional[Dict[str, Any]]:
    """The holder's record, or None while the file is empty or not a record."""
    try:
        record = json.loads(os.pread(descriptor, 4096, 0).decode() or "null")
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None
