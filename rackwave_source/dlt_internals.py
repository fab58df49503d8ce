"""Every use this project makes of dlt 1.31 beyond its documented API, in one module.

When dlt is upgraded, read this file first: each name says what it relies on and where dlt keeps
it. The rest of the project (the source and the command) uses dlt's public API, and reaches
dlt's internals only through here. A test (``tests/unit/test_layout.py``) keeps it that way.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.common.storages.load_package import PackageStorage
from dlt.common.versioned_state import json_decode_state
from dlt.sources.helpers.requests.retry import Client
from dlt.sources.helpers.requests.session import Session
from tenacity import RetryCallState

#: dlt's local state file in a pipeline's working folder (``Pipeline.STATE_FILE``)
LOCAL_STATE_FILE = "state.json"


def active_pipeline() -> Any:
    """The pipeline running this extract, or None (a resource iterated on its own).

    Read from dlt's pipeline context, not ``dlt.current.pipeline()``: that one resolves dlt's
    pipeline configuration on every call, and with no active pipeline makes one."""
    context = Container()[PipelineContext]
    return context.pipeline() if context.is_active() else None


def unstarted_generator(resource: Any) -> Any:
    """The generator a resource made by a function call will iterate (``resource._pipe.gen``),
    or None. Its arguments tell what the resource was made with, before it runs."""
    generator = getattr(getattr(resource, "_pipe", None), "gen", None)
    return generator if inspect.isgenerator(generator) else None


def bound_configuration(factory: Any, dataset_name: str) -> Any:
    """A destination factory's configuration resolved the way a run of ``dataset_name``
    resolves it (``spec()._bind_dataset_name``), with no pipeline made."""
    return factory.configuration(factory.spec()._bind_dataset_name(dataset_name=dataset_name))


def read_local_state(folder: str) -> Dict[str, Any]:
    """The state dlt keeps in a pipeline's working folder, decoded as dlt decodes it; empty when
    there is none. No pipeline is made: making one creates and may rewrite the folder."""
    try:
        with open(Path(folder) / LOCAL_STATE_FILE, encoding="utf-8") as file:
            found: Any = json_decode_state(file.read())
    except FileNotFoundError:
        return {}
    return found if isinstance(found, dict) else {}


# -- the load packages in a pipeline's working folder (dlt 1.31's layout) ------------------------

def extracted_packages(working_dir: str) -> List[Path]:
    """The packages extracted and not yet normalized (``normalize/extracted/<load id>``)."""
    return _children(Path(working_dir) / "normalize" / "extracted")


def normalized_package(working_dir: str, load_id: str) -> Path:
    """Where a normalized package waits for its load (``load/normalized/<load id>``)."""
    return Path(working_dir) / "load" / "normalized" / load_id


def interrupted_jobs(working_dir: str) -> List[Tuple[Path, Path]]:
    """(package, job file) of every job a killed load was running: in ``started_jobs``, and
    without the marker dlt writes once the destination committed the job
    (``PackageStorage.PENDING_TRANSITIONS_FOLDER``), with which dlt completes the job on resume
    instead of running it again."""
    committed = PackageStorage.PENDING_TRANSITIONS_FOLDER
    return [
        (package, job)
        for package in _children(Path(working_dir) / "load" / "normalized")
        for job in sorted((package / "started_jobs").glob("*"))
        if not (package / committed / job.name).exists()
    ]


def _children(folder: Path) -> List[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


# -- dlt's retrying requests session -------------------------------------------------------------

class NotifyingRetries(Client):
    """dlt's retrying session that tells each retry (tenacity's ``before_sleep``, set with
    ``retry_with`` on the ``send`` dlt wraps, in ``_make_session``) instead of retrying in
    silence for minutes. ``on_retry`` gets tenacity's state of the attempt that failed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_retry: Callable[[RetryCallState], None] = lambda state: None

    @property
    def max_attempts(self) -> int:
        """The attempts the session makes in all (``[runtime] request_max_attempts``)."""
        return int(self._retry_kwargs["max_attempts"])

    def _make_session(self) -> Session:
        session = super()._make_session()
        session.send = session.send.retry_with(  # type: ignore[attr-defined,method-assign]
            before_sleep=lambda state: self.on_retry(state))
        return session
