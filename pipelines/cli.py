"""The ``rackwave`` command: one parser, a subcommand per command, each a small class.

    rackwave [run] [options]        load leads and contacts (the default command)
    rackwave check | push | dbt | sql [options]

Each command is a class with ``configure(parser)`` (its arguments) and ``execute(args)`` (its
exit code), in a module of its own that is imported only when that command runs: a run never
imports the push, dbt or SQL code. Commands share helpers through ``pipelines/common.py``, never
through one another.

This module is the process's entry point (the console script, and ``python -m
pipelines.rackwave_pipeline``), and the one place that tunes the process: the garbage collector
and Arrow's allocator, before the command's imports.

Exit codes: 0 done; 2 bad settings or arguments; 1 a fatal error (credentials, API contract);
75 a temporary failure (API or warehouse down, rate limited): a scheduler may run it again later.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import io
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: name, module, class and one line of ``rackwave --help``, in the order shown
COMMANDS: Tuple[Tuple[str, str, str, str], ...] = (
    ("run", "pipelines.rackwave_pipeline", "RunCommand",
     "load leads and contacts into the warehouse (the default: `rackwave [options]`)"),
    ("check", "pipelines.check_command", "CheckCommand",
     "check settings, credentials and the API; say what the next run would do"),
    ("push", "pipelines.push_command", "PushCommand",
     "create leads in Rackwave from warehouse rows, exactly once (reverse ETL)"),
    ("dbt", "pipelines.dbt_command", "DbtCommand",
     "build and test the dbt project on the warehouse the runs load"),
    ("sql", "pipelines.sql_command", "SqlCommand",
     "query what the runs loaded: a table, CSV or JSON; a shell with no query"),
)
DEFAULT_COMMAND = "run"
#: allocations between two collections of the youngest generation (Python's default: 700)
GC_YOUNG_THRESHOLD = 10_000


class Command:
    """One subcommand: its arguments and what it does. Subclasses set ``name`` and
    ``description`` and implement both methods."""

    name = ""
    description = ""

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Adds the command's arguments to its subparser."""
        raise NotImplementedError

    def execute(self, args: argparse.Namespace) -> int:
        """Does the command; returns its exit code."""
        raise NotImplementedError

    def usage_document(self, text: str) -> Dict[str, Any]:
        """The ``--json`` document of arguments argparse refused (``text`` is its message): the
        run's document, as ``rackwave --json`` prints it for every failure."""
        from pipelines.run_report import run_document, usage_failure

        return run_document(pipeline=None, destination=None, dataset=None, seconds=0.0,
                            tables=[], failure=usage_failure(text))


def version_line() -> str:
    """``rackwave --version``: this package's version and the dlt it runs on."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"rackwave {of('rackwave-source')} (dlt {of('dlt')})"


def command_named(name: str) -> Command:
    """The command's class, its module imported now."""
    _, module, cls, _ = next(entry for entry in COMMANDS if entry[0] == name)
    made: Command = getattr(importlib.import_module(module), cls)()
    return made


def build_parser(selected: Optional[Command]) -> argparse.ArgumentParser:
    """The parser; only the command that runs configures its arguments (the others are
    listed, and their modules stay unimported)."""
    parser = argparse.ArgumentParser(
        prog="rackwave", description="Load Rackwave leads and contacts into a warehouse "
        "(DuckDB by default), and work with what was loaded.",
        epilog="`rackwave <command> --help` shows a command's options; `rackwave [options]` "
               "is `rackwave run [options]`.")
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", title="commands", metavar="<command>")
    for name, _, _, summary in COMMANDS:
        if selected is not None and selected.name == name:
            sub = commands.add_parser(name, help=summary, prog=f"rackwave {name}",
                                      description=selected.description or summary)
            selected.configure(sub)
        else:
            commands.add_parser(name, help=summary)
    return parser


def command_of(arguments: List[str]) -> Tuple[Optional[str], List[str]]:
    """The command the arguments name, and the arguments with it first; none for the parser's
    own ``--help`` and ``--version``. Without a name, the command is ``run``."""
    names = {entry[0] for entry in COMMANDS}
    if arguments[:1] and arguments[0] in names:
        return arguments[0], arguments
    if arguments[:1] in (["-h"], ["--help"], ["--version"]):
        return None, arguments
    return DEFAULT_COMMAND, [DEFAULT_COMMAND, *arguments]


def parse(parser: argparse.ArgumentParser, arguments: List[str],
          command: Optional[Command]) -> argparse.Namespace:
    """``parser.parse_args``; with ``--json``, arguments it refuses (exit code 2, argparse's text
    on stderr) are also reported as the command's JSON document."""
    if "--json" not in arguments or command is None:
        return parser.parse_args(arguments)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(arguments)
    except SystemExit as exc:
        sys.stderr.write(captured.getvalue())
        if exc.code:
            print(json.dumps(command.usage_document(captured.getvalue())))
        raise


class SwitchSaidOnce(logging.Filter):
    """dlt warns, whenever a pipeline is made, that the destination in its local state "differs
    ... and will be ignored" after a change of ``--destination``. Every command uses the warehouse
    it is given, and a run whose state belongs to another warehouse sets that state aside and
    says so in one line of its own (``recovery.set_aside_other_warehouse``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (" in state differs from destination " in message
                    or message.startswith("The state staging destination"))


def tune_process() -> None:
    """For a process that is this command, before the command's imports.

    * Arrow's default allocator (mimalloc) keeps memory per thread; with 16 threads decoding
      pages and dlt writing parquet, the system allocator gives a lower peak RSS at the same
      speed (benchmarks/README.md). pyarrow reads the setting once, when it loads; an explicit
      setting wins.
    * The collector is paused while the command's modules are imported (``spare_the_collector``
      then freezes what they made)."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    gc.disable()


def spare_the_collector(collecting: bool) -> None:
    """After the command's imports: the objects alive now (the modules: dlt, pyarrow, duckdb,
    ours), and at exit every object left, are moved out of the cyclic garbage collector's reach
    (``gc.freeze``). Its full collections would otherwise traverse them again and again for
    nothing, during the run and in the interpreter's teardown: a large share of a run with
    nothing new (benchmarks/README.md). Objects are still freed when their last reference goes;
    only reference cycles already garbage now or at exit are never collected, and the OS takes
    the memory back at exit. A collection is also started every ``GC_YOUNG_THRESHOLD``
    allocations instead of 700: a run makes few reference cycles. Not done when ``main`` is
    called with arguments from a longer-lived process (tests, a caller's code), whose garbage
    cycles (an unclosed connection) must still be collected."""
    gc.freeze()
    if collecting:
        gc.enable()
    atexit.register(gc.freeze)
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``rackwave ...``; ``argv`` None means this process is the command (tuned as such)."""
    collecting = gc.isenabled()
    if argv is None:
        tune_process()
    name, arguments = command_of(list(sys.argv[1:] if argv is None else argv))
    command = command_named(name) if name is not None else None
    if argv is None:
        spare_the_collector(collecting)
    args = parse(build_parser(command), arguments, command)
    if command is None:  # `rackwave` with no command: only --help/--version get here
        return 0
    from rackwave_source.warehouse.target import quiet_dlt

    quiet_dlt(SwitchSaidOnce)  # once per process (rackwave_source/warehouse/target.py)
    return command.execute(args)
