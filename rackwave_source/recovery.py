"""Finishing what a killed run left half done in dlt's working folder, so the next plain
``pipeline.run(rackwave_source())`` can go on.

dlt 1.31's normalize commits a package in two steps: it renames ``load/new/<load id>`` to
``load/normalized/<load id>``, then deletes ``normalize/extracted/<load id>``. A run killed
between the two leaves the package in both places; every later ``run()`` normalizes it again and
fails on the rename ("Directory not empty"), so the pipeline is stuck until someone deletes a
folder by hand. The normalized copy is complete (the rename is atomic), so deleting the extracted
one is exactly dlt's missing second step.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext

logger = logging.getLogger("rackwave_source")


def active_pipeline() -> Any:
    """The pipeline made or run last in this process, or None (none is made here)."""
    context = Container()[PipelineContext]
    return context.pipeline() if context.is_active() else None


def finish_normalize_commit(pipeline: Any) -> int:
    """Deletes the extracted copy of every package normalize already committed; returns how
    many there were."""
    root = Path(pipeline.working_dir)
    extracted = root / "normalize" / "extracted"
    normalized = root / "load" / "normalized"
    finished = 0
    for package in sorted(extracted.iterdir()) if extracted.is_dir() else ():
        if (normalized / package.name).is_dir():
            logger.warning("finishing the normalize step of load %s, which a killed run left "
                           "half committed", package.name)
            shutil.rmtree(package)
            finished += 1
    return finished
