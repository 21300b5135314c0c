"""Typed environment helpers that fail loudly.

A bad value (``REDIS_PORT=abc``) stops the process with a message naming the
variable, instead of a ValueError deep in a library or a silent default.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Mapping

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def env_str(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    return _env(env).get(name) or default


def env_int(
    name: str,
    default: int,
    env: Mapping[str, str] | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    raw = _env(env).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_float(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    raw = _env(env).get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    raw = _env(env).get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of true/false/1/0/yes/no, got {raw!r}")


def env_secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """``NAME`` or the contents of the file named by ``NAME_FILE`` (Docker secrets)."""
    env = _env(env)
    path = env.get(f"{name}_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().rstrip("\r\n")
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read ({exc.strerror})") from None
    return env.get(name) or None


# --- The env file `make run` writes ------------------------------------------
# `make run` writes every setting of the running pipeline (ports, generated
# secrets, the SQLite path) into one file, so a second terminal can run
# `manage.py ...`, `celery -A workers ...` or the health checks with no
# exports. Settings load it through ``load_env_file``, never the other way
# round: a variable already in the process environment always wins.
REPO_DIR = Path(__file__).resolve().parent.parent.parent
_OFF = {"", "0", "off", "no", "none", "false"}


def env_file_path(env: Mapping[str, str] | None = None):
    """The env file to load, or None.

    ``ECLEAN_ENV_FILE`` names it explicitly (an empty value, ``0`` or ``off``
    turns loading off: the test suite does that); otherwise ``env`` in
    ``ECLEAN_RUN_DIR`` (default ``.run/`` at the repository root), when that
    file exists. A named file that does not exist is a configuration error.
    """
    env = _env(env)
    named = env.get("ECLEAN_ENV_FILE")
    if named is not None:
        if named.strip().lower() in _OFF:
            return None
        path = Path(named)
        if not path.is_file():
            raise ImproperlyConfigured(f"ECLEAN_ENV_FILE={named} does not exist")
        return path
    path = Path(env.get("ECLEAN_RUN_DIR") or REPO_DIR / ".run") / "env"
    return path if path.is_file() else None


def read_env_file(path) -> dict[str, str]:
    """``KEY=value`` lines (shell-quoted values, ``#`` comments), as a dict."""
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                raise ImproperlyConfigured(f"{path}, line {number}: unbalanced quotes") from None
            if not words:
                continue
            key, sep, value = words[0].partition("=")
            if not sep or len(words) != 1 or not key.isidentifier():
                raise ImproperlyConfigured(f"{path}, line {number}: expected KEY=value")
            values[key] = value
    return values


def load_env_file(environ=None):
    """Copy the env file's variables into ``environ`` (default ``os.environ``)
    where they are not already set; return the file's path, or None."""
    environ = os.environ if environ is None else environ
    path = env_file_path(environ)
    if path is None:
        return None
    for key, value in read_env_file(path).items():
        environ.setdefault(key, value)
    return path
