"""``make redis-cli`` / ``python -m devtools.redis_cli [redis-cli arguments]``:
redis-cli connected to the Redis the settings point at (a running ``make run``
through its env file), the password passed in ``REDISCLI_AUTH`` so it never
shows on a command line or in ``ps``.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import unquote, urlsplit

from e_clean_backend import redis_config
from e_clean_backend.env import ImproperlyConfigured, load_env_file

from . import redis_server


def find_binary() -> str:
    try:
        return redis_server.find_binary("redis-cli")
    except RuntimeError as exc:
        raise SystemExit(f"redis-cli: {exc}") from None


def command(argv: list[str], environ: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The redis-cli command line and environment for ``argv``."""
    env = dict(environ)
    load_env_file(env)
    url = urlsplit(redis_config.redis_url(env))
    args = [find_binary(), "-h", url.hostname or "127.0.0.1", "-p", str(url.port or 6379),
            "-n", (url.path.lstrip("/") or "0")]
    if url.username:
        args += ["--user", unquote(url.username)]
    if url.scheme == "rediss":
        args.append("--tls")
    child = dict(environ)
    if url.password:
        child["REDISCLI_AUTH"] = unquote(url.password)
    return args + argv, child


def main(argv: list[str] | None = None) -> int:
    try:
        args, env = command(sys.argv[1:] if argv is None else argv, dict(os.environ))
    except ImproperlyConfigured as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    os.execve(args[0], args, env)


if __name__ == "__main__":
    sys.exit(main())
