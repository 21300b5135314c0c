"""The supervisor `make run` runs the Procfile with (devtools/procs.py), and
the pieces of devtools/run.py that need no pipeline: lock, env file, secrets."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from devtools import procs

SLOW_STOP = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *_: (time.sleep({delay}), sys.exit(0)))\n"
             "print('up', flush=True)\n"
             "while True: time.sleep(1)\n")


def python(code: str) -> str:
    return f"{sys.executable} -c \"{code}\""


def supervisor(entries, grace=30.0):
    out = io.StringIO()
    return procs.Supervisor(entries, dict(os.environ), os.getcwd(), grace=grace, out=out), out


def run_until_up(sup, out, count):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", sup.run()))
    thread.start()
    deadline = time.monotonic() + 60
    while out.getvalue().count("| up") < count:
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.05)
    return thread, result


def test_a_stop_waits_out_a_slow_shutdown_and_exits_0(tmp_path):
    """Like the worker's soft shutdown: longer than honcho's fixed 5 s."""
    script = tmp_path / "slow.py"
    script.write_text(SLOW_STOP.format(delay=6))
    sup, out = supervisor([("worker", f"PYTHONUNBUFFERED=1 {sys.executable} {script}"),
                           ("web", f"{sys.executable} -u -c \"print('up'); import time; time.sleep(600)\"")])
    thread, result = run_until_up(sup, out, 2)
    started = time.monotonic()
    sup.stop()
    thread.join(60)
    assert result["code"] == 0, out.getvalue()
    assert time.monotonic() - started >= 5.5, "waited for the slow one"
    assert "SIGKILL" not in out.getvalue()


def test_what_ignores_the_stop_is_killed_after_the_grace_and_the_exit_says_so(tmp_path):
    sup, out = supervisor([("stubborn", python("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                               "print('up', flush=True); time.sleep(600)"))], grace=2)
    thread, result = run_until_up(sup, out, 1)
    sup.stop()
    thread.join(60)
    assert result["code"] == 1 and "stubborn did not stop within 2 s: SIGKILL" in out.getvalue()


def test_a_second_stop_kills_at_once(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW_STOP.format(delay=120))
    sup, out = supervisor([("worker", f"PYTHONUNBUFFERED=1 {sys.executable} {script}")], grace=120)
    thread, result = run_until_up(sup, out, 1)
    started = time.monotonic()
    sup.stop()
    time.sleep(1)
    sup.stop()
    thread.join(60)
    assert time.monotonic() - started < 30 and "worker asked twice: SIGKILL" in out.getvalue()


def test_a_process_that_ends_on_its_own_stops_the_rest_with_its_code():
    sup, out = supervisor([("bridge", python("import sys; print('up', flush=True); sys.exit(3)")),
                           ("web", python("import time; print('up', flush=True); time.sleep(600)"))])
    code = sup.run()
    assert code == 3 and "bridge exited with code 3; stopping the others" in out.getvalue()


def test_the_environment_is_passed_and_no_env_file_is_read(tmp_path, monkeypatch):
    """Unlike honcho, nothing is read from a .env in the working directory."""
    (tmp_path / ".env").write_text("REDIS_PASSWORD=from-dot-env\n")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    sup = procs.Supervisor([("show", "REMAP=1 printenv REDIS_PASSWORD REMAP")], {"PATH": os.environ["PATH"],
                           "REDIS_PASSWORD": "given"}, tmp_path, grace=5, out=out)
    sup.run()
    assert "show | given" in out.getvalue() and "show | 1" in out.getvalue()
    assert "from-dot-env" not in out.getvalue()


def test_exec_form():
    assert procs.exec_form("REMAP_SIGTERM=SIGQUIT celery -A workers worker") == \
        "REMAP_SIGTERM=SIGQUIT exec celery -A workers worker"
    assert procs.exec_form("python -m workers.bridge") == "exec python -m workers.bridge"
    assert procs.exec_form("a && b") == "a && b"


def test_zombies_do_not_keep_a_group_alive():
    proc = subprocess.Popen(["sleep", "0"], start_new_session=True)
    time.sleep(1)  # exited, not reaped: a zombie
    assert not procs._group_alive(proc.pid)
    proc.wait()
    live = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert procs._group_alive(live.pid)
    finally:
        live.kill()
        live.wait()


def test_read_procfile(tmp_path):
    path = tmp_path / "Procfile"
    path.write_text("# comment\nweb: a b\n\nworker: c\n")
    assert procs.read_procfile(path) == [("web", "a b"), ("worker", "c")]
    path.write_text("web a b\n")
    with pytest.raises(ValueError, match="line 1"):
        procs.read_procfile(path)


RUN_CODE = """
import os, sys, time
from devtools import run
lock = run.take_lock()
print('locked', flush=True)
time.sleep(600)
"""


def test_the_lock_names_the_holder_and_dies_with_it(tmp_path):
    env = {**os.environ, "ECLEAN_RUN_DIR": str(tmp_path)}
    holder = subprocess.Popen([sys.executable, "-c", RUN_CODE], env=env, stdout=subprocess.PIPE, text=True,
                              cwd=procs.Path(procs.__file__).parent.parent)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (tmp_path / "run.lock").write_text(f"pid {holder.pid}, web http://127.0.0.1:1/")
        check = subprocess.run([sys.executable, "-c", "from devtools import run; run.take_lock()"], env=env,
                               capture_output=True, text=True, cwd=procs.Path(procs.__file__).parent.parent)
        assert check.returncode != 0 and "AlreadyRunning" in check.stderr and f"pid {holder.pid}" in check.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # A killed run leaves no stale lock behind.
    again = subprocess.run([sys.executable, "-c", "from devtools import run; run.take_lock(); print('ok')"],
                           env=env, capture_output=True, text=True, cwd=procs.Path(procs.__file__).parent.parent)
    assert again.stdout.strip() == "ok", again.stderr


def test_secrets_are_kept_between_runs_and_the_file_is_private(tmp_path, monkeypatch):
    from devtools import run

    monkeypatch.setattr(run, "RUN_DIR", tmp_path)
    monkeypatch.setattr(run, "ENV_FILE", tmp_path / "env")
    monkeypatch.setattr(run, "LEGACY_SECRETS", tmp_path / "secrets.env")
    # An older checkout's secrets.env is taken over, then removed.
    (tmp_path / "secrets.env").write_text("REDIS_PASSWORD=old-pw\nFLOWER_PASSWORD=fl\n")
    first = run.load_secrets()
    assert first["REDIS_PASSWORD"] == "old-pw" and first["FLOWER_BASIC_AUTH"] == "admin:fl"
    run.write_env_file({**first, "DATABASE_URL": "sqlite:////path with space/db.sqlite3"})
    assert (tmp_path / "env").stat().st_mode & 0o777 == 0o600
    # and the folder with it: it also holds the SQLite file and Redis's AOF
    assert tmp_path.stat().st_mode & 0o777 == 0o700
    assert not (tmp_path / "secrets.env").exists()
    assert run.load_secrets() == first
    from e_clean_backend.env import read_env_file

    assert read_env_file(tmp_path / "env")["DATABASE_URL"] == "sqlite:////path with space/db.sqlite3"


def test_a_redis_left_by_a_killed_run_is_named_not_doubled(tmp_path):
    """devtools.run SIGKILLed: its flock is gone, its Redis may not be."""
    from devtools.redis_server import find_binary, free_port

    orphan = subprocess.Popen([find_binary(), "--port", str(free_port()), "--bind", "127.0.0.1", "--save", ""],
                              start_new_session=True, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    assert orphan.poll() is None
    try:
        (tmp_path / "redis.pid").write_text(f"{orphan.pid}\n")
        env = {**os.environ, "ECLEAN_RUN_DIR": str(tmp_path)}
        result = subprocess.run([sys.executable, "-m", "devtools.run"], env=env, capture_output=True, text=True,
                                timeout=30, cwd=procs.Path(procs.__file__).parent.parent)
        assert result.returncode == 1
        assert f"still runs on {tmp_path / 'redis'} (pid {orphan.pid}); stop it first: kill {orphan.pid}" \
            in result.stderr
        assert not (tmp_path / "env").exists(), "nothing started, nothing written"
    finally:
        orphan.kill()
        orphan.wait()


def test_scale_names_the_copies_as_honcho_does():
    entries = [("web", "daphne"), ("worker", "celery -A workers worker")]
    assert procs.scale(entries, {"worker": 3}) == [
        ("web", "daphne"), ("worker.1", "celery -A workers worker"), ("worker.2", "celery -A workers worker"),
        ("worker.3", "celery -A workers worker")]
    assert procs.scale(entries, {}) == entries
    with pytest.raises(ValueError, match="no Procfile entry named wroker"):
        procs.scale(entries, {"wroker": 2})
    with pytest.raises(ValueError, match="at least one"):
        procs.scale(entries, {"worker": 0})


def test_each_copy_knows_its_name_and_the_worker_line_makes_it_the_node_name():
    sup, out = supervisor(procs.scale([("w", "echo name=$HONCHO_PROCESS_NAME; sleep 600")], {"w": 2}))
    thread, result = run_until_up_text(sup, out, "name=w.2")
    sup.stop()
    thread.join(60)
    assert "name=w.1" in out.getvalue() and result["code"] == 0
    # The Procfile's worker gives that name to Celery: one node per copy.
    worker = dict(procs.read_procfile(procs.REPO / "Procfile"))["worker"]
    assert "-n ${HONCHO_PROCESS_NAME:-worker}@%h" in worker


def run_until_up_text(sup, out, text):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", sup.run()))
    thread.start()
    deadline = time.monotonic() + 60
    while text not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.05)
    return thread, result


@pytest.mark.parametrize("given", ["abc", "0", "-1", "2.5"])
def test_make_run_refuses_a_bad_worker_count(given, tmp_path):
    env = {**os.environ, "WORKER_PROCESSES": given, "ECLEAN_RUN_DIR": str(tmp_path / "run")}
    result = subprocess.run([sys.executable, "-m", "devtools.run"], cwd=procs.REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"make run: WORKER_PROCESSES={given!r}: set it to a whole number of worker processes, "
        f"1 or more (default {procs.WORKER_PROCESSES})"]
