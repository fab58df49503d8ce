"""Rackwave sandbox: a local, faithful implementation of the Rackwave Platform API.

Used by the connector's tests, by its ``--sandbox`` flag and by benchmarks.
It must never import ``rackwave_source``.
"""

from rackwave_sandbox.admin import AdminClient, AdminError
from rackwave_sandbox.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, SandboxConfig
from rackwave_sandbox.server import RunningServer, Sandbox

__all__ = [
    "DEMO_CLIENT_ID",
    "DEMO_CLIENT_SECRET",
    "AdminClient",
    "AdminError",
    "RunningServer",
    "Sandbox",
    "SandboxConfig",
]
