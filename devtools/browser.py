"""Debian's headless Chromium and its WebDriver, which the browser tests drive.

`make test` (devtools/testrun.py) calls :func:`ensure` first: on a fresh
machine or CI runner it installs the packages when it may (root with apt-get).
Browser downloads of their own (Selenium Manager, Playwright) cannot work
here, so the tests use these system binaries and fail, never skip, without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PACKAGES = ("chromium", "chromium-driver")


def missing() -> list[str]:
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]


def ensure() -> bool:
    """Install chromium and chromium-driver when missing and we are root; True when both are there."""
    if not missing():
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"browser tests need {' and '.join(missing())}: apt-get install {' '.join(PACKAGES)}",
              file=sys.stderr, flush=True)
        return False
    print(f"installing {' '.join(PACKAGES)} for the browser tests", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], env=env, check=False)
    return not missing()


if __name__ == "__main__":
    sys.exit(0 if ensure() else 1)
