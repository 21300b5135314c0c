"""The Celery app: ``celery -A workers worker`` finds it here, in
``workers.celery``, by Celery's own convention; ``workers/__init__.py``
imports nothing, so a process that only needs the event contract
(``workers.envelope``) never builds the app.

All configuration lives in Django settings under the ``CELERY_`` prefix, each
value beside the reason for it (backend/e_clean_backend/settings.py). Celery
sees those settings only: what it is given, ``celery inspect conf`` and
Flower show to anyone who can reach them, so the Redis URL, the secret key
and the database settings never enter its configuration.
"""

from __future__ import annotations

import logging
import os
import sys

import click
from celery import Celery, signals
from kombu import Exchange, Queue

from . import broker_fixes
from .topics import TOPICS as TOPIC_QUEUES

broker_fixes.apply()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "e_clean_backend.settings")


def _settings_or_exit() -> None:
    """Load Django settings now: a bad value (``REDIS_PORT=abc``) is then one
    line and exit 2 for the worker and Flower, not a traceback from inside Celery."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - evaluated for its side effect
    except ImproperlyConfigured as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _refuse_open_flower(argv: list[str]) -> None:
    """Flower shows every worker, its tasks and its configuration, and can
    revoke tasks and shut workers down: it does not start without basic auth
    (FLOWER_BASIC_AUTH, or --basic-auth / --auth) unless it listens on the
    loopback only (``--address=127.0.0.1``, what `make run` does). Flower's
    own default address is every interface."""
    args = argv[argv.index("flower") + 1:]
    options = {}
    for n, arg in enumerate(args):
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if not eq:
                value = args[n + 1] if n + 1 < len(args) and not args[n + 1].startswith("--") else ""
            options[name.replace("-", "_")] = value
    address = options.get("address", os.environ.get("FLOWER_ADDRESS", ""))
    given = " ".join(filter(None, [options.get("basic_auth"), os.environ.get("FLOWER_BASIC_AUTH")]))
    if "change-me" in given:
        # .env.example's placeholder: as good as no password (Redis refuses it too).
        print("celery flower: FLOWER_BASIC_AUTH still holds the change-me placeholder from .env.example; "
              "set a real password", file=sys.stderr, flush=True)
        sys.exit(2)
    auth = any(options.get(k) or os.environ.get(f"FLOWER_{k.upper()}")
               for k in ("basic_auth", "auth", "auth_provider"))
    if not auth and address not in LOOPBACK:
        print("celery flower: refusing to start without authentication on "
              f"{address or 'every interface'}: set FLOWER_BASIC_AUTH=user:password, "
              "or listen on the loopback only (--address=127.0.0.1)", file=sys.stderr, flush=True)
        sys.exit(2)


class CelerySettings:
    """The ``CELERY_*`` Django settings and nothing else, read lazily (Celery
    reads its configuration on first use, after Django is set up)."""

    PREFIX = "CELERY_"

    def __dir__(self):
        from django.conf import settings

        return [name for name in dir(settings) if name.startswith(self.PREFIX)]

    def __getattr__(self, name):
        if not name.startswith(self.PREFIX):
            raise AttributeError(name)
        from django.conf import settings

        return getattr(settings, name)


def _celery_command() -> str | None:
    """The sub-command (worker, flower, inspect ...) when the ``celery``
    command is loading this app, else None: the command line tells, not the
    name of the program that imported us."""
    context = click.get_current_context(silent=True)
    return context.invoked_subcommand if context is not None else None


# Only for the celery command: importing the app elsewhere (a test, the
# replay seam) keeps Django's lazy settings.
_COMMAND = _celery_command()
if _COMMAND is not None:
    if _COMMAND == "flower":
        _refuse_open_flower(sys.argv)
    _settings_or_exit()
broker_fixes.mask_urls_in_shown_settings()
app = Celery("workers")
app.config_from_object(CelerySettings(), namespace="CELERY")
# One queue per topic, each behind its own direct exchange, so `-Q payments`
# gives a worker exactly one topic.
app.conf.task_queues = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name)
                             for name in TOPIC_QUEUES)
# The topic tasks are declared in one registry module, imported by every worker.
app.conf.imports = ("workers.tasks",)
# Every task message is checked before Celery reads its headers (workers/guard.py).
app.conf.worker_consumer = "workers.guard:GuardedConsumer"
# Task events in batches, not one PUBLISH per task (workers/worker_steps.py).
app.steps["consumer"].add("workers.worker_steps:BatchedTaskEvents")

log = logging.getLogger(__name__)


def _command_line_level(loglevel) -> int | None:
    """The level of an explicit ``-l``/``--loglevel`` (Celery passes its
    default, WARNING, when there is none: that one must not beat LOG_LEVEL)."""
    if loglevel is None:
        return None
    ctx = click.get_current_context(silent=True)
    while ctx is not None and "loglevel" not in ctx.params:
        ctx = ctx.parent
    if ctx is None or ctx.get_parameter_source("loglevel") != click.core.ParameterSource.COMMANDLINE:
        return None
    return loglevel if isinstance(loglevel, int) else logging.getLevelName(str(loglevel).upper())


@signals.setup_logging.connect
def use_django_logging(loglevel=None, **_):
    """One log format for every process: Django's LOGGING (text, or JSON with
    LOG_FORMAT=json), with topic/type/event_id on lines about an event.

    The level is the worker's ``-l`` when the command line gives one, else
    LOG_LEVEL: ``-l warning`` drops the per-event INFO lines, as it says.
    """
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
    level = _command_line_level(loglevel)
    if level is not None:
        for name in (None, *settings.LOGGING.get("loggers", {})):
            logging.getLogger(name).setLevel(level)
    # The topic tasks log one line of their own for an expected refusal
    # (workers/tasks.py); Celery's "raised expected" would repeat it.
    logging.getLogger("celery.app.trace").addFilter(_not_an_expected_refusal)


def _not_an_expected_refusal(record: logging.LogRecord) -> bool:
    context = record.args if isinstance(record.args, dict) else {}
    return context.get("description") != "raised expected"


@signals.worker_init.connect
def refuse_wrong_credentials(**_):
    """Exit at once, non-zero, when Redis refuses our credentials.

    Celery retries broker connections forever (which we want while Redis is
    starting), and kombu counts a refused password as a connection error: a
    wrong password would be an endless, quiet retry loop. A Redis that is not
    up yet is left to Celery's own retry. A refusal after start-up (a password
    rotated under a running worker) ends the same way: see
    ``GuardedConsumer.ensure_connected`` in workers/guard.py.
    """
    from workers.preflight import CredentialsRefused, broker_refusal_message, check_credentials

    try:
        check_credentials(app.conf.broker_url, broker_refusal_message)
    except CredentialsRefused as exc:
        print(f"celery worker: {exc}", file=sys.stderr, flush=True)
        os._exit(3)  # skip atexit handlers that would reconnect and log tracebacks
