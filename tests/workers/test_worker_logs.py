"""What a real worker process logs for an event it refuses."""

from __future__ import annotations

import time

import pytest

from core.models import DeadLetter

from .. import support
from ..support import envelope, wait_for

pytestmark = [pytest.mark.db, pytest.mark.slow]


def test_an_expected_refusal_is_one_line_with_reason_and_event_id(tmp_path, redis_client, job):
    from workers.celery import app

    job.status = "completed"
    job.save()
    worker = support.worker(tmp_path)
    try:
        worker.wait_log(support.WORKER_READY, timeout=60)
        message = envelope("job.cancelled", {"job_id": job.pk})  # a completed job cannot be cancelled
        app.send_task("jobs", args=[message], task_id=message["id"], queue="jobs")
        letter = wait_for(lambda: DeadLetter.objects.filter(event_id=message["id"]).first(), what="dead letter")
        wait_for(lambda: "Event refused" in worker.log(), what="the refusal in the log")
        time.sleep(1)  # anything Celery logs after it
    finally:
        worker.stop()
    assert letter.reason == "permanent_error" and "Traceback" in letter.traceback  # kept for people
    lines = [line for line in worker.log().splitlines() if message["id"] in line]
    refused = [line for line in lines if "Event refused (permanent_error)" in line]
    assert len(refused) == 1 and "cannot become cancelled" in refused[0], lines
    assert "WARNING" in refused[0]
    log = worker.log()
    assert "Traceback" not in log and "raised unexpected" not in log and " ERROR " not in log, log[-3000:]
    assert "raised expected" not in log  # our line says it once
