"""TLS is always verified; a CA bundle setting lets a private certificate authority in."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rackwave_sandbox import Sandbox, SandboxConfig
from rackwave_source import ConfigurationError, TLSVerificationError
from support import sandbox_ids


@pytest.fixture
def https_sandbox(tmp_path: Path):
    """The sandbox over HTTPS with a self-signed certificate for 127.0.0.1 (openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    server = Sandbox(SandboxConfig(leads=150, contacts=20)).serve(tls=(str(cert), str(key)))
    yield server, cert
    server.stop()


def test_an_unverifiable_certificate_stops_the_run_before_anything_is_sent(
    https_sandbox, make_loader
):
    server, _ = https_sandbox
    loader = make_loader(server)

    with pytest.raises(TLSVerificationError) as raised:
        loader.run()

    assert f"TLS certificate of {server.base_url}/auth/token could not be verified" in str(
        raised.value)
    assert "`ca_bundle`" in str(raised.value)
    assert server.admin.stats()["total"] == 0


def test_a_ca_bundle_makes_the_private_certificate_trusted(https_sandbox, make_loader):
    server, cert = https_sandbox
    loader = make_loader(server, ca_bundle=str(cert))

    loader.run()

    assert loader.ids("leads") == sandbox_ids(server, "leads")
    assert loader.ids("contacts") == sandbox_ids(server, "contacts")


def test_a_missing_ca_bundle_file_is_named(sandbox, make_loader, tmp_path):
    loader = make_loader(sandbox, ca_bundle=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigurationError, match="`ca_bundle`"):
        loader.run()
    assert sandbox.admin.stats()["total"] == 0
