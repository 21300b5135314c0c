"""workers.guard.check as a function: the headers a crafted message may not carry.

The chaos suite (tests/chaos/test_worker_holes.py) sends such messages to a
real worker; these pin the rules themselves."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from workers.guard import BadTaskMessage, check

BODY = json.dumps([[{"id": "x"}], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])


def headers(**extra):
    return {"lang": "py", "task": "notifications", "id": "6c1f0d7e-5b1a-4e43-9f53-2a4f0f3d9b11", **extra}


def at(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def test_a_retry_eta_within_half_the_visibility_timeout_passes():
    check(headers(eta=at(100)), BODY, max_time_limit=60, max_delay=150)
    check(headers(eta=None), BODY, max_time_limit=60, max_delay=150)


@pytest.mark.parametrize("eta", ["9999-01-01T00:00:00+00:00", at(3600)])
def test_an_eta_further_than_any_retry_waits_is_refused(eta):
    with pytest.raises(BadTaskMessage, match="eta"):
        check(headers(eta=eta), BODY, max_time_limit=60, max_delay=150)


@pytest.mark.parametrize("bad", [{"timelimit": ["x", "y"]}, {"timelimit": [1e-9, 1e-9]},
                                 {"task": "celery.chord_unlock"}, {"retries": "many"}])
def test_the_headers_the_issue_reproduced_are_refused(bad):
    with pytest.raises(BadTaskMessage):
        check(headers(**bad), BODY, max_time_limit=60, max_delay=150)
