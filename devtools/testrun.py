"""``make test``: the suite on SQLite, then the database tests on PostgreSQL.

The PostgreSQL pass runs whenever a server answers at TEST_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/test); with REQUIRE_POSTGRES=1
(CI) a missing server fails the run instead of skipping the pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from urllib.parse import urlsplit

from devtools import browser
from devtools.procs import postgres_unavailable

TOTALS: Counter = Counter()
# pytest's exit code when the selection (-k, -m) matched no test.
NO_TESTS_COLLECTED = 5


def pytest(args: list[str], **env: str) -> int:
    print(f"\n=== pytest {' '.join(args)} ({', '.join(f'{k}={v}' for k, v in env.items())})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "junit.xml")
        code = subprocess.call([sys.executable, "-m", "pytest", f"--junitxml={report}", *args],
                               env={**os.environ, **env})
        if os.path.exists(report):
            suite = ET.parse(report).getroot()
            suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
            tests, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
            TOTALS["passed"] += tests - failures - errors - skipped
            TOTALS["failed"] += failures + errors
            TOTALS["skipped"] += skipped
    return code


def redact(url: str) -> str:
    """The URL without its password, fit for a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}").geturl()


def main(argv: list[str]) -> int:
    url = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    shown = redact(url)  # a CI log must not carry the database password
    required = os.environ.get("REQUIRE_POSTGRES") == "1"
    # The browser tests need Debian's chromium; without it they fail, not skip.
    browser.ensure()
    results = {"sqlite": pytest(argv, TEST_DB="sqlite")}
    why_not = postgres_unavailable(url)
    if why_not is None:
        results["postgres"] = pytest([*argv, "-m", "db"], TEST_DB="postgres")
        if results["postgres"] == NO_TESTS_COLLECTED:
            # `-k redis_config` selects no database test: nothing to run on
            # PostgreSQL is not a failure (the check below still fails a run
            # where nothing ran at all).
            print("PostgreSQL pass: no database test in this selection, nothing to run there", flush=True)
            results["postgres"] = 0
    elif required:
        print(f"PostgreSQL is required (REQUIRE_POSTGRES=1) but {shown} is not reachable: {why_not}", flush=True)
        results["postgres"] = 1
    else:
        print(f"PostgreSQL pass skipped: {shown} not reachable ({why_not})", flush=True)
    print("\n=== make test: " + ", ".join(f"{k} {'ok' if v == 0 else f'FAILED ({v})'}" for k, v in results.items()))
    # The two passes together, as one closing line.
    print(f"make test: {TOTALS['passed']} passed, {TOTALS['failed']} failed, {TOTALS['skipped']} skipped", flush=True)
    if TOTALS["passed"] + TOTALS["failed"] == 0:
        # CI must never report success for a run that tested nothing.
        print("make test: FAILED, no test ran (check PYTEST_ARGS)", flush=True)
        return 1
    return 0 if all(v == 0 for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
