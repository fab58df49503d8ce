"""A full scan asked for with ``--full-scan`` is owed until one finishes.

Scheduled full scans (``full_scan_every``) repeat by themselves: the time of the last one is in
the state, which only a finished load moves. A full scan asked for by hand is a flag on one
command, so a run killed or failed half way would leave the next plain run incremental, and the
edits and deletes the user wanted applied would wait for the next scheduled one. So the request
is written down beside the pipeline's working folder (which a discarded run loses) before the run
starts and removed when a full scan has finished; the next run honours a request still there.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from dlt.common.pipeline import get_dlt_pipelines_dir


class FullScanRequest:
    """The owed full scan of one pipeline, as a small file in its pipelines folder."""

    def __init__(self, pipelines_dir: Optional[str], pipeline_name: str) -> None:
        folder = Path(pipelines_dir or get_dlt_pipelines_dir())
        self.path = folder / f"{pipeline_name}.full-scan-requested"

    def pending(self) -> Optional[str]:
        """When the owed full scan was asked for (ISO 8601), or None."""
        try:
            return self.path.read_text().strip() or "an earlier run"
        except FileNotFoundError:
            return None

    def record(self) -> None:
        """Writes the request down (keeping the time of the first one still owed)."""
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(datetime.now(timezone.utc).isoformat(timespec="seconds"))
        os.replace(temporary, self.path)

    def settle(self) -> None:
        """A full scan finished: nothing is owed any more."""
        self.path.unlink(missing_ok=True)
