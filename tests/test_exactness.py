"""Exit 0 means exact: servers that behave a little differently from our sandbox's defaults.

Each story here is one that once ended in exit 0 over a wrong warehouse: a server serving fewer
records per page than asked, a record dated in the future, a page of records that all break the
contract. Arrange the sandbox that way, run as a user would (the command and plain dlt code), and
compare the warehouse with the API.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from support import assert_equals_api


def test_a_server_that_serves_fewer_records_per_page_than_asked_loses_none(
        sandbox_factory, make_loader, via):
    # The account's server caps pages at 50 and says so (meta.per_page 50, last_page to match).
    server = sandbox_factory(leads=730, contacts=260, page_cap=50)
    loader = make_loader(server, via=via, per_page=100)

    loader.run()
    assert_equals_api(loader, server)

    server.admin.insert("leads", count=75)
    server.admin.insert("contacts", count=3)
    loader.run()
    assert_equals_api(loader, server)
    assert loader.count("leads") == 805


def test_a_page_cap_on_a_full_scan_read_by_many_workers_loses_none(sandbox_factory, make_loader):
    server = sandbox_factory(leads=1210, contacts=40, page_cap=30)
    loader = make_loader(server, per_page=100, concurrency=6)
    loader.run(full_scan=True)
    assert_equals_api(loader, server)
    server.admin.delete("leads", server.admin.ids("leads")[700])
    loader.run(full_scan=True)
    assert_equals_api(loader, server)
