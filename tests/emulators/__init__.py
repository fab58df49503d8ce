"""Local stand-ins for cloud warehouses, started by the test suite itself (no account, no network).

Each emulator runs in a virtual environment of its own under ``.venv-recipes/`` (see
:func:`emulators.venv.tool_venv`): their pinned libraries (DuckDB, sqlglot) differ from the ones
the project needs in ``.venv``.
"""
