"""Every injected fault kind as a plain ``requests`` client sees it."""

from __future__ import annotations

import http.client
import socket

import pytest
import requests

from rackwave_sandbox import RunningServer

from .conftest import authed_session, get_token


def _leads(api: requests.Session, server: RunningServer) -> requests.Response:
    return api.get(f"{server.base_url}/leads", params={"per_page": 50}, timeout=5)


def test_500_json(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "500", "count": 2}])
    for _ in range(2):
        resp = _leads(api, sandbox)
        assert resp.status_code == 500 and resp.json() == {"message": "Server Error."}
    assert _leads(api, sandbox).status_code == 200
    assert sandbox.admin.stats()["statuses"]["GET /v1/leads"] == {"500": 2, "200": 1}


def test_any_status_with_custom_message(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "403", "message": "This action is unauthorized."}, {"kind": "400"}, {"kind": "503"}])
    assert _leads(api, sandbox).json() == {"message": "This action is unauthorized."}
    resp = _leads(api, sandbox)
    assert resp.status_code == 400 and resp.json() == {"message": "The request parameters are invalid."}
    resp = _leads(api, sandbox)
    assert resp.status_code == 503 and resp.json() == {"message": "Service Unavailable."}


def test_502_html(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "502_html"}])
    resp = _leads(api, sandbox)
    assert resp.status_code == 502
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in resp.text
    with pytest.raises(ValueError):
        resp.json()


def test_drop_closes_without_response(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "drop"}])
    with pytest.raises(requests.ConnectionError):
        _leads(api, sandbox)
    assert _leads(api, sandbox).status_code == 200  # the session reconnects
    assert sandbox.admin.stats()["statuses"]["GET /v1/leads"] == {"dropped": 1, "200": 1}


def test_truncate_sends_half_the_body_then_closes(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "truncate"}])
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _leads(api, sandbox)  # requests reports the short read as ChunkedEncodingError
    assert _leads(api, sandbox).status_code == 200


def test_truncate_with_raw_socket_shows_short_body(sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "truncate"}])
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    conn.request("GET", "/v1/leads?per_page=10", headers={"Authorization": f"Bearer {get_token(sandbox)}"})
    resp = conn.getresponse()
    length = int(resp.headers["Content-Length"])
    with pytest.raises(http.client.IncompleteRead) as raised:
        resp.read()
    assert len(raised.value.partial) == length // 2
    conn.close()


def test_truncate_json_is_a_consistent_200_with_broken_json(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "truncate_json"}])
    resp = _leads(api, sandbox)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert resp.content.startswith(b'{"data":[')
    with pytest.raises(ValueError):
        resp.json()


def test_429_fault_has_retry_after(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "429", "retry_after": 3}, {"kind": "429"}])
    first, second = _leads(api, sandbox), _leads(api, sandbox)
    assert first.status_code == second.status_code == 429
    assert first.headers["Retry-After"] == "3" and second.headers["Retry-After"] == "1"
    assert first.json() == {"message": "Too Many Attempts."}


def test_path_and_after_select_requests(api: requests.Session, sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "500", "path": "/v1/contacts", "after": 2, "count": 1}])
    codes = []
    for _ in range(3):
        codes.append(_leads(api, sandbox).status_code)
        codes.append(api.get(f"{sandbox.base_url}/contacts", timeout=5).status_code)
    assert codes == [200, 200, 200, 200, 200, 500]
    assert sandbox.admin.faults() == []


def test_page_selects_one_page_whatever_the_request_order(
    api: requests.Session, sandbox: RunningServer
) -> None:
    # A concurrent client asks for pages out of order: "page 2" must not mean "the 2nd request".
    sandbox.admin.add_faults([{"kind": "500", "path": "/v1/leads", "page": 2}])
    codes = {page: api.get(f"{sandbox.base_url}/leads", params={"page": page, "per_page": 10},
                           timeout=5).status_code for page in (3, 1, 2)}
    assert codes == {3: 200, 1: 200, 2: 500}
    assert sandbox.admin.faults() == []


def test_token_endpoint_only_faulted_when_named(sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "500"}])
    get_token(sandbox)  # default faults skip the token endpoint
    assert len(sandbox.admin.faults()) == 1
    sandbox.admin.clear_faults()
    sandbox.admin.add_faults([{"kind": "502_html", "path": "/v1/auth/token"}])
    with pytest.raises(requests.HTTPError):
        get_token(sandbox)
    get_token(sandbox)


def test_unknown_fault_kind_is_rejected(sandbox: RunningServer) -> None:
    resp = requests.post(f"{sandbox.root_url}/_admin/faults", json={"faults": [{"kind": "explode"}]}, timeout=5)
    assert resp.status_code == 422


def test_random_faults_are_seeded(sandbox_factory) -> None:  # type: ignore[no-untyped-def]
    def run() -> list[int | str]:
        server = sandbox_factory(leads=20, contacts=0, error_rate=0.2, drop_rate=0.1, seed=3)
        session = authed_session(server)
        outcomes: list[int | str] = []
        for _ in range(60):
            try:
                outcomes.append(session.get(f"{server.base_url}/leads", timeout=5).status_code)
            except requests.ConnectionError:
                outcomes.append("drop")
        return outcomes

    first, second = run(), run()
    assert first == second
    assert 0 < first.count(500) < 30 and 0 < first.count("drop") < 20
    assert first.count(200) > 20


def test_drop_is_a_connection_close_at_socket_level(sandbox: RunningServer) -> None:
    sandbox.admin.add_faults([{"kind": "drop"}])
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as sock:
        sock.sendall(b"GET /v1/leads HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100) == b""
