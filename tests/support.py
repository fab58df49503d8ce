"""Test helpers: run the real pipeline against a running sandbox and read the warehouse back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
import json
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pipelines.rackwave_pipeline import RunResult, run_pipeline
from rackwave_sandbox import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from warehouses import DuckDBWarehouse, Warehouse, with_environment

DATASET = "rackwave"
#: The documented fields, per table (nested address flattened): what end-to-end tests compare.
FIELDS: Dict[str, Tuple[str, ...]] = {
    "leads": ("name", "email", "phone", "company", "status", "source", "tags", "created_at",
              "updated_at"),
    "contacts": ("first_name", "last_name", "email", "phone", "company", "title", "lead_id", "tags",
                 "address__street", "address__city", "address__postcode", "address__country",
                 "created_at", "updated_at"),
}
TIMESTAMPS = ("created_at", "updated_at")


def api_value(record: Mapping[str, Any], name: str) -> Any:
    """A record's value for a column: nested fields by ``parent__child``, timestamps parsed."""
    if "__" in name:
        parent, child = name.split("__", 1)
        nested = record.get(parent)
        return nested.get(child) if isinstance(nested, dict) else None
    value = record.get(name)
    if name in TIMESTAMPS and value is not None:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def _loaded_value(name: str, value: Any) -> Any:
    if name == "tags" and isinstance(value, str):
        return json.loads(value)  # DuckDB returns its JSON type as text
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    return value


def assert_equals_api(loader: Any, server: Any, kinds: Tuple[str, ...] = tuple(FIELDS),
                      dataset: str = "rackwave") -> None:
    """Every table holds exactly the API's records: no id missing, extra or doubled, same values.
    ``loader``: anything with ``query(sql)`` (a Loader, a Warehouse's rows)."""
    for kind in kinds:
        fields = FIELDS[kind]
        want = {r["id"]: tuple(api_value(r, f) for f in fields)
                for r in server.admin.records(kind)}
        rows = loader.query(f"SELECT id, {', '.join(fields)} FROM {dataset}.{kind}")
        ids = [row[0] for row in rows]
        assert len(ids) == len(set(ids)), f"{kind}: ids loaded more than once"
        got = {row[0]: tuple(_loaded_value(f, v) for f, v in zip(fields, row[1:])) for row in rows}
        assert set(got) == set(want), (
            f"{kind}: missing {sorted(set(want) - set(got))[:3]}, extra "
            f"{sorted(set(got) - set(want))[:3]}")
        stale = [i for i in sorted(want) if got[i] != want[i]]
        assert not stale, f"{kind}: {stale[0]} is {got[stale[0]]}, the API says {want[stale[0]]}"


def pages_for(rows: int, per_page: int = 100) -> int:
    """Requests a quiet full scan of ``rows`` records takes: pages until a short or empty one
    (a full last page is followed by an empty one: the count is not trusted alone), and page 1
    read again at the end unless the whole list fit on page 1."""
    pages = rows // per_page + 1
    return pages + (1 if pages > 1 else 0)


@dataclass
class Loader:
    """One user's pipeline, pointed at one sandbox, writing one warehouse (a DuckDB file unless
    ``warehouse`` says otherwise)."""

    server: Any
    workdir: Path
    pipeline_name: str = "rackwave"
    client_id: str = DEMO_CLIENT_ID
    client_secret: str = DEMO_CLIENT_SECRET
    options: Dict[str, Any] = field(default_factory=dict)
    warehouse: Optional[Warehouse] = None
    #: "command": through the `rackwave` command's run_pipeline; "dlt": a user's own plain
    #: `dlt.pipeline(...).run(rackwave_source(...))`, with dlt's defaults and no settings of ours
    via: str = "command"

    @property
    def target(self) -> Warehouse:
        """Where runs load: ``warehouse``, else the DuckDB file in ``workdir``."""
        return self.warehouse or DuckDBWarehouse(self.duckdb_path)

    @property
    def duckdb_path(self) -> Path:
        return self.workdir / "rackwave_data.duckdb"

    @property
    def pipelines_dir(self) -> Path:
        return self.workdir / "pipelines"

    def run(self, **kwargs: Any) -> RunResult:
        source_options = {**self.options, **kwargs.pop("source_options", {})}
        target = self.target
        dataset = kwargs.pop("dataset", target.dataset)
        with with_environment(target.settings()):
            if self.via == "dlt":
                return self._run_plain_dlt(source_options, dataset, **kwargs)
            return run_pipeline(
                destination=kwargs.pop("destination", target.name),
                dataset=dataset,
                base_url=kwargs.pop("base_url", self.server.base_url),
                client_id=self.client_id,
                client_secret=self.client_secret,
                duckdb_path=str(self.duckdb_path),
                pipelines_dir=str(self.pipelines_dir),
                pipeline_name=self.pipeline_name,
                source_options=source_options,
                **kwargs,
            )

    def _run_plain_dlt(self, source_options: Dict[str, Any], dataset: str,
                       resources: Optional[List[str]] = None, full_scan: bool = False) -> RunResult:
        """What a user's own code does: a pipeline with dlt's defaults, the source, run."""
        import time

        import dlt

        from pipelines.summary import summarize
        from rackwave_source import RESOURCES, rackwave_source

        target = self.target
        destination: Any = (dlt.destinations.duckdb(str(self.duckdb_path))
                            if target.name == "duckdb" else target.name)
        pipeline = dlt.pipeline(self.pipeline_name, destination=destination,
                                dataset_name=dataset, pipelines_dir=str(self.pipelines_dir))
        selected = list(resources or RESOURCES)
        source = rackwave_source(base_url=self.server.base_url, client_id=self.client_id,
                                 client_secret=self.client_secret, full_scan=full_scan,
                                 **source_options).with_resources(*selected)
        started = time.monotonic()
        pipeline.run(source, table_format="delta" if target.name == "filesystem" else None)
        return RunResult(pipeline, summarize(pipeline, selected, None),
                         time.monotonic() - started, target.name, dataset)

    def query(self, sql: str, *params: Any) -> List[Tuple[Any, ...]]:
        return self.target.query(sql, *params)[1]

    def ids(self, table: str) -> List[str]:
        return [row[0] for row in self.query(f"SELECT id FROM {DATASET}.{table} ORDER BY id")]

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM {DATASET}.{table}")[0][0])

    def row(self, table: str, record_id: str) -> Dict[str, Any]:
        names, rows = self.target.query(
            f"SELECT * FROM {DATASET}.{table} WHERE id = ?", record_id)
        assert len(rows) == 1, f"{record_id} appears {len(rows)} times in {table}"
        return dict(zip(names, rows[0]))

    def last_run(self, resource: str, result: RunResult) -> Dict[str, Any]:
        state = result.pipeline.state["sources"]["rackwave"]["resources"][resource]
        return dict(state["last_run"])

    def table(self, result: RunResult, name: str) -> Any:
        return next(t for t in result.tables if t.table == name)


def sandbox_ids(server: Any, kind: str) -> List[str]:
    return sorted(server.admin.ids(kind))


def page_requests(server: Any, kind: str) -> int:
    return int(server.admin.requests(f"GET /v1/{kind}"))


def reload_dlt_settings() -> None:
    """Makes dlt read its settings (``.dlt/*.toml`` of the working folder, ``DLT_DATA_DIR``)
    again, as a new process would: it reads them once per process."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    Container()[PluggableRunContext].reload()


def write_dlt_settings(folder: Path, name: str, text: str) -> None:
    """Writes ``folder/.dlt/<name>`` (config.toml, secrets.toml) and makes dlt read it again."""
    (folder / ".dlt").mkdir(exist_ok=True)
    (folder / ".dlt" / name).write_text(text)
    reload_dlt_settings()


REPO = Path(__file__).resolve().parents[1]


def command_environment(dlt_data_dir: Path, **extra: str) -> Dict[str, str]:
    """The environment of a `rackwave` process a scheduler starts: no settings leaking in from
    this one, its own dlt folder, the repository importable, and ``extra``."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("SOURCES__", "RUNTIME__", "DESTINATION__"))}
    environment.update({"DLT_DATA_DIR": str(dlt_data_dir), "PYTHONPATH": str(REPO),
                        "RUNTIME__DLTHUB_TELEMETRY": "false"})
    environment.update(extra)
    return environment


def dlt_warnings(output: str) -> List[str]:
    """The WARNING lines dlt's logger printed (``...|[WARNING]|...|dlt|...``): a normal run
    prints none, only the command's own words."""
    return [line for line in output.splitlines() if "|[WARNING]|" in line]


@dataclass
class Finished:
    """A `rackwave` command's end, as a test reads it: exit code, stdout, stderr."""

    returncode: int
    stdout: str
    stderr: str


def rackwave_in_process(cwd: Path, *args: str,
                        env: Optional[Mapping[str, str]] = None) -> Finished:
    """``rackwave <args>`` run by ``pipelines.cli.main`` in this process, in ``cwd``, with
    ``env`` (and dlt's folder, ``cwd/dlt``) set for the call only: what a process of its own
    would do, without the second or two of imports one costs. For stories where a process is
    not the point (exit codes, output, files); signals and kills need a process."""
    import contextlib
    import io

    from pipelines.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    with with_environment({"DLT_DATA_DIR": str(cwd / "dlt"), **(env or {})}):
        os.chdir(cwd)
        reload_dlt_settings()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
        except SystemExit as exit:  # argparse's errors and --help
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        finally:
            os.chdir(here)
    reload_dlt_settings()
    return Finished(code, out.getvalue(), err.getvalue())
