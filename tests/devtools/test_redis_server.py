"""devtools/redis_server.py: the private Redis of tests, `make run` and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from devtools.redis_server import RedisServer

# Characters a config line could misread: quotes, comment sign, spaces, a newline.
AWKWARD = 'p"a\'ss #wo rd\\x41\nrequirepass other %[]'


def test_the_password_is_not_on_the_command_line_and_works():
    server = RedisServer(password=AWKWARD)
    try:
        # Redis rewrites its process title once started, so read the command
        # line from the first instant on, as another user's `ps` could.
        server.start(wait=False)
        seen = [Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()]
        while not _answers(server):
            seen.append(Path(f"/proc/{server.proc.pid}/cmdline").read_bytes())
        # Redis renames its process quickly, so the reads above may miss the
        # window; the arguments it was started with never have it either.
        seen.append("\0".join(server.args()).encode())
        cmdline = b"\n".join(seen)
        assert AWKWARD.encode() not in cmdline
        assert b"requirepass" not in cmdline
        for line in AWKWARD.splitlines():
            assert line.encode() not in cmdline
        assert redis.Redis(host="127.0.0.1", port=server.port, password=AWKWARD).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="other").ping()
        # No config file holding it is left beside the data either.
        for name in os.listdir(server.dir):
            assert AWKWARD.encode() not in (Path(server.dir) / name).read_bytes()
    finally:
        server.cleanup()


def _answers(server) -> bool:
    try:
        return redis.Redis(host="127.0.0.1", port=server.port, password=AWKWARD, socket_connect_timeout=0.2).ping()
    except redis.ConnectionError:
        assert server.proc.poll() is None, "redis-server exited"
        return False
