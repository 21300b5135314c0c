"""A Redis that refuses our credentials: a clear one-line error naming the
variable, a non-zero exit, no secret in the output, no retry loop."""

from __future__ import annotations

import pytest

from e_clean_backend import redis_config

from . import support

WRONG = "wr0ng-S3cret:@/#%"


def _env(redis_server, **parts):
    env = {"REDIS_URL": "", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_server.port), **parts}
    return env


@pytest.mark.parametrize("parts", [{"REDIS_PASSWORD": WRONG}, {}], ids=["wrong-password", "no-password"])
@pytest.mark.parametrize("process", ["bridge", "worker"])
def test_refused_credentials_exit_non_zero_with_the_fix(tmp_path, redis_server, process, parts):
    env = _env(redis_server, **parts)
    proc = support.bridge(tmp_path, env=env) if process == "bridge" else support.worker(tmp_path, env=env)
    try:
        code = proc.wait(timeout=30)
    finally:
        proc.stop()
    out = proc.log()
    assert code != 0
    assert "REDIS_PASSWORD" in out and "refused" in out
    assert WRONG not in out and redis_config.redis_url({"REDIS_PASSWORD": WRONG}).split("@")[0] not in out
    assert redis_server.password not in out
    assert "Traceback" not in out
    # one line about it, not a retry loop
    assert out.count("refused the connection credentials") == 1


def test_bad_configuration_exits_2_naming_the_variable(tmp_path, redis_server):
    proc = support.bridge(tmp_path, env={"REDIS_URL": "", "REDIS_PORT": "not-a-port"})
    try:
        assert proc.wait(timeout=30) == 2
    finally:
        proc.stop()
    assert "REDIS_PORT must be a whole number" in proc.log() and "Traceback" not in proc.log()


def test_acl_user_with_special_password_works(tmp_path, redis_client, redis_server):
    password = "Ac1:@/#%[] ?&="
    redis_client.acl_setuser("events", enabled=True, passwords=[f"+{password}"], commands=["+@all"],
                             keys=["*"], channels=["*"])
    env = _env(redis_server, REDIS_USERNAME="events", REDIS_PASSWORD=password)
    proc = support.bridge(tmp_path, env=env)
    try:
        proc.wait_log(support.READY)
        clients = redis_client.client_list()
        assert any(c["user"] == "events" for c in clients)
    finally:
        assert proc.stop() == 0
        redis_client.acl_deluser("events")
    assert password not in proc.log()


@pytest.mark.parametrize("command", [
    ["-m", "celery", "-A", "workers", "worker"],
    ["backend/manage.py", "migrate"],
], ids=["worker", "manage.py"])
def test_bad_configuration_is_one_line_for_every_process(command):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, *command], cwd=support.REPO, capture_output=True, text=True,
                            timeout=60, env={**__import__("os").environ, "REDIS_URL": "", "REDIS_PORT": "abc"})
    assert result.returncode == 2
    assert "configuration error: REDIS_PORT must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_whose_broker_url_has_the_wrong_password_names_celery_broker_url(tmp_path, redis_server):
    from urllib.parse import quote

    broker = f"redis://:{quote(WRONG, safe='')}@127.0.0.1:{redis_server.port}/0"
    proc = support.worker(tmp_path, env={"CELERY_BROKER_URL": broker})
    try:
        code = proc.wait(timeout=30)
    finally:
        proc.stop()
    out = proc.log()
    assert code == 3
    (line,) = [line for line in out.splitlines() if "refused the connection credentials" in line]
    assert "CELERY_BROKER_URL" in line and "REDIS_PASSWORD" not in line
    assert WRONG not in out and quote(WRONG, safe="") not in out
