"""A full scan asked for (``full_scan = true``, ``rackwave --full-scan``) is owed until one
finishes.

Scheduled full scans (``full_scan_every``) repeat by themselves: the time of the last one is in
the state, which only a finished extract moves. A full scan asked for by hand is a setting of one
run, so a run killed while it extracts would leave the next plain run incremental, and the edits
and deletes the user wanted applied would wait for the next scheduled one. So the request is
written down in the pipeline's working folder as the run starts; a later run still finds it there,
and is a full scan too, until the state shows a full scan that started at or after it (a killed
run's package that dlt loads on the next ``run()`` counts: its state went with it). On an
ephemeral runner the folder, and the request, go with the machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

FILE_NAME = "rackwave_full_scans_requested.json"


class RequestedScans:
    """Owed full scans of one pipeline, by resource: ``{resource: ISO time asked}``."""

    def __init__(self, working_dir: str) -> None:
        self.path = Path(working_dir) / FILE_NAME

    @classmethod
    def of(cls, pipeline: Any) -> Optional["RequestedScans"]:
        """The pipeline's requests, or None outside a pipeline (nothing to remember them in)."""
        folder = getattr(pipeline, "working_dir", None)
        return cls(folder) if folder else None

    def pending(self, resource: str) -> Optional[str]:
        """When the owed full scan of ``resource`` was asked for, or None."""
        return self._read().get(resource)

    def record(self, resource: str, when: str) -> None:
        """Writes the request down, keeping the time of an earlier one still owed."""
        requests = self._read()
        if resource not in requests:
            requests[resource] = when
            self._write(requests)

    def settle(self, resource: str) -> None:
        requests = self._read()
        if requests.pop(resource, None) is not None:
            self._write(requests)

    def _read(self) -> Dict[str, str]:
        try:
            found = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    def _write(self, requests: Dict[str, str]) -> None:
        if not requests:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(requests, sort_keys=True))
        os.replace(temporary, self.path)
