"""What Celery and Flower show of the configuration: never a password."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from urllib.parse import quote

import pytest

from devtools.redis_server import free_port

from .. import support
from ..support import REPO, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _secrets(redis_server) -> list[str]:
    return [redis_server.password, quote(redis_server.password, safe="")]


def _celery(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "celery", "-A", "workers", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def worker(tmp_path, redis_client):
    proc = support.worker(tmp_path, name="leaky")
    proc.wait_log(support.WORKER_READY, timeout=60)
    yield proc
    proc.stop()


def test_inspect_conf_and_flower_show_no_password(worker, redis_server, tmp_path):
    done = _celery("inspect", "conf", "-j", "--timeout", "10")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "leaky@" in done.stdout and "broker_transport_options" in done.stdout.lower()
    for secret in _secrets(redis_server):
        assert secret not in done.stdout + done.stderr
    # Django's own settings are not Celery's business.
    assert "SECRET_KEY" not in done.stdout and "DATABASES" not in done.stdout and "REDIS_URL" not in done.stdout

    port = free_port()
    flower = support.start("flower", [sys.executable, "-m", "celery", "-A", "workers", "flower",
                                     "--address=127.0.0.1", f"--port={port}"], tmp_path,
                          {"FLOWER_BASIC_AUTH": "admin:flower-pw"})
    try:
        auth = "Basic " + base64.b64encode(b"admin:flower-pw").decode()

        def workers_page():
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/workers?refresh=1",
                                             headers={"Authorization": auth})
            try:
                with urllib.request.urlopen(request, timeout=20) as answer:
                    text = answer.read().decode()
            except OSError:
                return None
            data = json.loads(text)
            return text if any(name.startswith("leaky@") and data[name].get("conf") for name in data) else None

        text = wait_for(workers_page, timeout=60, interval=0.5, what="Flower's /api/workers with the worker's conf")
    finally:
        flower.stop()
    for secret in _secrets(redis_server):
        assert secret not in text
    assert "********" in text  # the broker URL is there, masked


@pytest.mark.parametrize("args, env", [
    ([], {}),  # Flower's default: every interface
    (["--address=0.0.0.0"], {}),
    (["--address", "10.1.2.3"], {}),
    ([], {"FLOWER_ADDRESS": "0.0.0.0"}),
])
def test_flower_refuses_to_start_open_to_the_network_without_auth(args, env):
    done = _celery("flower", f"--port={free_port()}", *args, env={"FLOWER_BASIC_AUTH": "", **env}, timeout=30)
    assert done.returncode == 2
    assert "FLOWER_BASIC_AUTH" in done.stderr and "refusing" in done.stderr


def test_flower_refuses_the_placeholder_password_of_env_example():
    done = _celery("flower", f"--port={free_port()}", "--address=127.0.0.1",
                   env={"FLOWER_BASIC_AUTH": "admin:change-me"}, timeout=30)
    assert done.returncode == 2
    assert "FLOWER_BASIC_AUTH" in done.stderr and "change-me" in done.stderr
