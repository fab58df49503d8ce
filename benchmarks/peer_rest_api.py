"""The peer: dlt's generic ``rest_api`` source configured for Rackwave as a user would.

dlt defaults everywhere except what Rackwave needs to work at all:

* auth: OAuth2 client credentials, but the token request is a JSON body (dlt's
  ``OAuth2ClientCredentials`` posts a form, which Rackwave rejects), hence the tiny subclass;
* paginator: page numbers from 1, stopping at ``meta.last_page``;
* ``data_selector: data`` and ``per_page=100`` (the API's default is 20);
* ``incremental`` on ``created_at`` (the API has no "since" parameter, so dlt filters rows after
  downloading them), ``primary_key: id`` and ``write_disposition: merge``.

No parallelism, no loader-format or buffer tweaks: this is what a user gets from the docs, and
the figure a purpose-built connector has to beat. Credentials come from
``SOURCES__RACKWAVE__CLIENT_ID`` / ``SOURCES__RACKWAVE__CLIENT_SECRET`` like the connector's.

Usage::

    python benchmarks/peer_rest_api.py --base-url http://127.0.0.1:8765/v1 --duckdb-file peer.duckdb
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, Optional, Sequence

import dlt
from dlt.common.configuration import configspec
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from dlt.sources.rest_api import rest_api_source
from dlt.sources.rest_api.typing import RESTAPIConfig

DATASET = "rackwave"


@configspec
class JsonOAuth2ClientCredentials(OAuth2ClientCredentials):
    """Client credentials whose token request is JSON, as Rackwave's ``/auth/token`` requires."""

    def build_access_token_request(self) -> Dict[str, Any]:
        """The token request as ``requests`` keyword arguments: a JSON body instead of a form."""
        return {
            "json": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "client_credentials",
                **self.access_token_request_data,
            }
        }


def build_config(base_url: str, client_id: str, client_secret: str,
                 newest_first: bool = False) -> RESTAPIConfig:
    """The ``rest_api`` configuration a user would write for Rackwave's leads and contacts.

    ``newest_first``: also tell dlt the API lists newest first (``row_order: desc``), so an
    incremental run stops at the first page older than the cursor instead of reading every page:
    what a user who read the API reference would add, and the fair peer for a run with nothing
    new (``run.py --noop``).
    """
    incremental: Dict[str, Any] = {"cursor_path": "created_at",
                                   "initial_value": "1970-01-01T00:00:00Z"}
    if newest_first:
        incremental["row_order"] = "desc"
    return {
        "client": {
            "base_url": base_url,
            "auth": JsonOAuth2ClientCredentials(
                access_token_url=f"{base_url}/auth/token",
                client_id=client_id,
                client_secret=client_secret,
            ),
            "paginator": {
                "type": "page_number",
                "base_page": 1,
                "page_param": "page",
                "total_path": "meta.last_page",
            },
        },
        "resource_defaults": {
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {
                "data_selector": "data",
                "params": {"per_page": 100},
                "incremental": incremental,
            },
        },
        "resources": [
            {"name": "leads", "endpoint": {"path": "leads"}},
            {"name": "contacts", "endpoint": {"path": "contacts"}},
        ],
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one load into ``--duckdb-file`` (dataset ``rackwave``) and prints dlt's load info."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8765/v1")
    # Not "rackwave.duckdb": DuckDB names the catalog after the file, and a catalog named like the
    # dataset makes `rackwave.leads` ambiguous for dlt.
    parser.add_argument("--duckdb-file", required=True, help="e.g. peer.duckdb")
    parser.add_argument("--pipeline-name", default="peer")
    parser.add_argument("--newest-first", action="store_true",
                        help="row_order: desc (stop at the cursor instead of reading every page)")
    args = parser.parse_args(argv)
    base_url = args.base_url.rstrip("/")
    source = rest_api_source(
        build_config(
            base_url,
            os.environ["SOURCES__RACKWAVE__CLIENT_ID"],
            os.environ["SOURCES__RACKWAVE__CLIENT_SECRET"],
            newest_first=args.newest_first,
        ),
        name="rackwave",
    )
    pipeline = dlt.pipeline(
        pipeline_name=args.pipeline_name,
        destination=dlt.destinations.duckdb(os.path.abspath(args.duckdb_file)),
        dataset_name=DATASET,
    )
    started = time.perf_counter()
    info = pipeline.run(source)
    print(info)
    print(f"peer rest_api load took {time.perf_counter() - started:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
