"""Fixtures for the real-time tests: logged-in sessions and a real ASGI server.

The web server runs exactly the Procfile's ``web`` line (Daphne), so the tests
exercise the command `make run` and compose use.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest
import requests

from devtools.redis_server import free_port
from tests import support

ARTIFACTS = support.REPO / "tests" / "artifacts"  # git-ignored: screenshots of browser tests


def procfile_line(name: str) -> str:
    for line in (support.REPO / "Procfile").read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name:
            return command.strip()
    raise AssertionError(f"no {name} line in the Procfile")


class Web(support.Proc):
    """The Procfile's web process on a free port."""

    def __init__(self, log_dir: Path, env: dict | None = None, name: str = "web", port: int | None = None):
        self.port = port or free_port()
        # The venv's bin first, as `make run` and `make test` have it.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        super().__init__(name, ["sh", "-c", procfile_line("web")], log_dir,
                         {**os.environ, "PYTHONUNBUFFERED": "1", "WEB_PORT": str(self.port), "PATH": path,
                          **(env or {})})

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/notifications/"

    def wait_ready(self, timeout: float = 60.0) -> "Web":
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"web exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                return requests.get(f"{self.http}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        support.wait_for(up, timeout, interval=0.2, what="the web process to answer /healthz")
        return self


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    """The static files collected once, as the Dockerfile does: the web
    process runs with DEBUG off here, like production, and serves them."""
    import subprocess

    root = tmp_path_factory.mktemp("static")
    subprocess.run([sys.executable, "backend/manage.py", "collectstatic", "--no-input", "-v", "0"],
                   cwd=support.REPO, env={**os.environ, "DJANGO_STATIC_ROOT": str(root)}, check=True, timeout=120)
    return root


@pytest.fixture
def web_factory(tmp_path, static_root):
    started: list[Web] = []

    def start(env: dict | None = None, name: str = "web", port: int | None = None, ready: bool = True) -> Web:
        env = {"DJANGO_STATIC_ROOT": str(static_root), **(env or {})}
        web = Web(tmp_path, env, name=f"{name}{len(started)}", port=port)
        started.append(web)
        return web.wait_ready() if ready else web

    yield start
    for web in started:
        web.stop()


def session_cookie(user) -> str:
    """A real session for ``user`` in the database, as a login would make."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture
def make_user(clean_db):
    from django.contrib.auth import get_user_model

    def make(username: str, password: str | None = None):
        return get_user_model().objects.create_user(username, password=password or secrets.token_urlsafe(12))

    return make


@pytest.fixture(scope="session", autouse=True)
def _artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ECLEAN_TEST_ARTIFACTS", str(ARTIFACTS))
