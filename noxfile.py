"""Test sessions, one per Python in `requires-python`; `./scripts/test` runs them all.

The main version runs every check (linters, type checker, the whole suite). The others run
the tests marked `smoke`: the in-process unit tests and a few end-to-end polls, restarts and
serving loops, enough to catch what differs between Python versions in about half a minute
each.
`nox -s tests-3.10` runs one; `nox -l` lists them.
"""

from __future__ import annotations

import os

import nox

MAIN = "3.11"
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# pytest-xdist workers for the main session. The suite mostly waits (exporter processes,
# simulators, Prometheus, sleeps), so more workers than the machine's 2 cores pay: on 2 cores,
# 129 s with -n 4, 111 s with -n 8, 92 s with -n 8 handing out two tests at a time
# (--maxschedchunk 2) with the long runs first (tests/conftest.py; xdist's default hands each
# worker a quarter of its share up front, and one worker was left with a 30-second run while
# the others had finished), 69 s once collection stopped importing the SDKs, cryptography and
# Playwright in every worker. The 15 slowest tests are printed at the end of every run. An
# `-n` in the arguments (`./scripts/test -n 0 -x tests/test_x.py`) comes after this one and
# wins.
WORKERS = "8"
SCHEDULING = ("--maxschedchunk", "2", "--durations=15")

# Compiled bytecode in every session's virtualenv, and cached for the package and the tests
# (scripts/test says why: a third of the suite's time where PYTHONDONTWRITEBYTECODE is set).
os.environ.setdefault("UV_COMPILE_BYTECODE", "1")
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"
# uv when it is there (scripts/test installs it): three times faster than pip for the extras.
nox.options.default_venv_backend = "uv|virtualenv"
# A declared version with no interpreter is skipped locally but fails CI: untested is not green.
nox.options.error_on_missing_interpreters = os.environ.get("CI", "").lower() not in (
    "",
    "0",
    "false",
)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Every check on the main version, the smoke tests on the others."""
    session.install("-q", "--disable-pip-version-check", "-e", ".[test]")
    # Collected once here first, so that the package's bytecode and pytest's rewritten test
    # modules are cached before the workers start: from a fresh clone, 8 workers otherwise
    # each compile all of it at once (12.7 s and 23 s of CPU before the first test, against
    # 5.9 s and 10 s with the cache).
    session.run("pytest", "--collect-only", "-q", "-p", "no:cacheprovider", silent=True)
    if session.python == MAIN:
        session.run("ruff", "check", ".")
        session.run("ruff", "format", "--check", ".")
        session.run("mypy")  # targets the oldest version (pyproject.toml)
        session.run("pytest", "-n", WORKERS, *SCHEDULING, *session.posargs)
    else:
        # No cache: --lf/--ff after a run keep meaning the main version's failures. On the
        # same workers as the main session: the smoke set is mostly in-process unit tests,
        # about 400 of them, half a minute on 4 workers against a minute and a half serially.
        # scripts/test runs these side by side, on fewer workers each (SMOKE_WORKERS).
        workers = os.environ.get("SMOKE_WORKERS", "4")
        session.run("pytest", "-n", workers, "-m", "smoke", "-p", "no:cacheprovider")
