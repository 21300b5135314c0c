"""devtools/testrun.py, the runner behind `make test` and CI."""

from __future__ import annotations

import os
import subprocess
import sys

from ..support import REPO


def run_testrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devtools.testrun", *args, "-p", "no:cacheprovider"], cwd=REPO,
                          capture_output=True, text=True, timeout=90, env={**os.environ, "REQUIRE_POSTGRES": "0"})


def test_a_selection_without_database_tests_passes():
    # The PostgreSQL pass selects nothing here (pytest exits 5): not a failure.
    done = run_testrun("tests/devtools/test_redis_server.py", "-k", "command_line")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "make test: 1 passed, 0 failed" in done.stdout


def test_a_selection_that_runs_nothing_at_all_fails():
    done = run_testrun("tests/devtools/test_redis_server.py", "-k", "no_such_test_anywhere")
    assert done.returncode != 0
    assert "no test ran" in done.stdout


def test_a_database_url_is_shown_without_its_password():
    from devtools.testrun import redact

    assert redact("postgresql://ci:s3cr%40t@db.example:5432/test") == "postgresql://ci:***@db.example:5432/test"
    assert redact("postgresql://postgres@127.0.0.1:5432/test") == "postgresql://postgres@127.0.0.1:5432/test"
