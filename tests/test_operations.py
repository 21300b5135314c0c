"""Operating the pipeline: metrics, logs, health, admin, scaling, Flower and
`make run`, exercised as the person on call would."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess

import pytest
import requests
from django.test import Client

from core.models import Job, ProcessedEvent
from devtools.redis_server import free_port

from . import support
from .support import envelope, publish_raw, scrape, wait_for

pytestmark = [pytest.mark.slow]


@pytest.mark.db
def test_bridge_metrics_move(tmp_path, redis_client, users):
    port = free_port()
    bridge = support.bridge(tmp_path, env={"BRIDGE_METRICS_PORT": str(port)})
    try:
        bridge.wait_log(support.READY)
        before = scrape(port)
        assert before['eclean_bridge_subscribed'] == 1
        for _ in range(3):
            publish_raw(redis_client, "notifications",
                        envelope("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"}))
        publish_raw(redis_client, "jobs", b"not json")
        key = 'eclean_bridge_events_enqueued_total{topic="notifications"}'
        after = wait_for(lambda: (m := scrape(port)).get(key) == 3 and m, what="enqueued counter at 3")
        assert after['eclean_bridge_events_received_total{source="live",topic="notifications"}'] == 3
        assert after['eclean_bridge_events_rejected_total{reason="not_json",topic="jobs"}'] == 1
        assert after['eclean_dead_letters{stage="bridge",topic="jobs"}'] == 1
        assert after["eclean_bridge_batch_size_count"] >= 1
        assert after["eclean_bridge_enqueue_seconds_count"] >= 1
        assert "eclean_bridge_reconnects_total" in after
    finally:
        bridge.stop()


def test_json_logs_carry_the_event_fields(tmp_path, redis_client):
    bridge = support.bridge(tmp_path, env={"LOG_FORMAT": "json"})
    try:
        bridge.wait_log("Event bridge ready")
        event_id = "3f1d2c4b-0000-4000-8000-00000000abcd"
        publish_raw(redis_client, "jobs", {"id": event_id, "type": "job.created", "data": {"job_id": "x"}})
        bridge.wait_log("Rejected message")
    finally:
        bridge.stop()
    lines = [json.loads(line) for line in bridge.log().splitlines() if line.startswith("{")]
    assert lines, bridge.log()
    rejected = next(line for line in lines if line["message"].startswith("Rejected message"))
    assert (rejected["topic"], rejected["event_id"], rejected["level"]) == ("jobs", event_id, "WARNING")
    ready = next(line for line in lines if line["message"].startswith("Event bridge ready"))
    assert ready["message"] == support.READY


@pytest.mark.db
def test_worker_log_lines_name_topic_type_and_event(tmp_path, redis_client, users):
    bridge = support.bridge(tmp_path)
    worker = support.worker(tmp_path)
    try:
        bridge.wait_log(support.READY)
        worker.wait_log(support.WORKER_READY)
        m = envelope("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"})
        publish_raw(redis_client, "notifications", m)
        worker.wait_log("Event handled")
    finally:
        bridge.stop()
        worker.stop()
    assert f"Event handled [topic=notifications type=notification.created event_id={m['id']}]" in worker.log()


@pytest.mark.db
def test_two_workers_on_their_own_queues(tmp_path, redis_client, users, job):
    bridge = support.bridge(tmp_path)
    payments = support.worker(tmp_path, name="payments", queues="payments", concurrency=1)
    rest = support.worker(tmp_path, name="rest", queues="jobs,notifications,chat", concurrency=1)
    try:
        for p in (bridge, payments, rest):
            p.wait_log(support.READY if p is bridge else support.WORKER_READY)
        msgs = {
            "payments": envelope("payment.succeeded", {"payment_id": "pi_s", "job_id": job.pk, "amount": "5.00",
                                                       "currency": "EUR"}),
            "jobs": envelope("job.created", {"job_id": job.pk}),
            "chat": envelope("chat.message", {"sender_id": users["client"].pk, "recipient_id": users["cleaner"].pk,
                                              "text": "hi"}),
            "notifications": envelope("notification.created",
                                      {"user_id": users["client"].pk, "title": "t", "message": "m"}),
        }
        for topic, m in msgs.items():
            publish_raw(redis_client, topic, m)
        ids = [m["id"] for m in msgs.values()]
        wait_for(lambda: ProcessedEvent.objects.filter(event_id__in=ids).count() == 4, what="4 events handled")
    finally:
        bridge.stop()
        payments.stop()
        rest.stop()
    for topic, m in msgs.items():
        line = f"Task {topic}[{m['id']}] received"
        on_payments, on_rest = line in payments.log(), line in rest.log()
        assert (on_payments, on_rest) == ((True, False) if topic == "payments" else (False, True)), topic


@pytest.mark.db
def test_healthz(redis_client, temp_settings):
    client = Client()
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "database": "ok", "redis": "ok"}
    temp_settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["redis"].startswith("error")


@pytest.mark.db
def test_admin_pages_render_for_a_superuser(redis_client, users):
    from django.contrib.auth import get_user_model

    from core.deadletters import record

    get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    record(topic="jobs", stage="bridge", reason="not_json", payload=b"garbage")
    client = Client()
    assert client.get("/admin/login/").status_code == 200
    assert client.login(username="root", password="pw-for-tests-only")
    page = client.get("/admin/core/deadletter/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "not_json" in body and "By topic" in body and "By stage" in body and "Replay selected" in body
    for path in ("/admin/core/job/", "/admin/core/payment/", "/admin/core/notification/", "/admin/core/processedevent/"):
        assert client.get(path).status_code == 200, path
    # Creating a job in the admin publishes job.created after the commit.
    response = client.post("/admin/core/job/add/", {"client": users["client"].pk, "title": "Via admin",
                                                   "status": "open"})
    assert response.status_code == 302
    job = Job.objects.get(title="Via admin")
    (_, fields), = redis_client.xrange("eclean:journal:jobs")
    assert json.loads(fields[b"e"])["data"] == {"job_id": job.pk}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(240)
def test_make_run_as_a_person_would(tmp_path):
    """`make run`, then: log into Flower with the printed credentials and find a
    just-published event's task by its id; scrape the bridge's metrics; Ctrl-C
    stops everything, the Redis included."""
    ports = {"RUN_REDIS_PORT": free_port(), "WEB_PORT": free_port(), "FLOWER_PORT": free_port(),
             "BRIDGE_METRICS_PORT": free_port()}
    # A new user's shell: none of the suite's own settings.
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SECRET_KEY")
           and not k.startswith(("CELERY_", "EVENTS_", "BRIDGE_"))}
    env.update({k: str(v) for k, v in ports.items()})
    env["ECLEAN_RUN_DIR"] = str(tmp_path / "run")
    out_path = tmp_path / "make-run.log"
    out = open(out_path, "wb")
    proc = subprocess.Popen(["make", "-s", "run"], cwd=support.REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log = lambda: out_path.read_text(errors="replace")  # noqa: E731
    try:
        wait_for(lambda: "Event bridge ready" in log() and "ready." in log(), timeout=120,
                 what=f"pipeline up:\n{log()[-3000:]}")
        flower_user, flower_pw = re.search(r"flower\s+\S+\s+user (\S+) / (\S+)", log()).groups()
        admin_pw = re.search(r"admin\s+\S+\s+user admin / (\S+)", log()).group(1)
        secrets = dict(line.split("=", 1) for line in (tmp_path / "run" / "env").read_text().splitlines()
                       if line and not line.startswith("#"))
        assert secrets["REDIS_PASSWORD"] not in log(), "the Redis password is never printed"
        import redis

        r = redis.Redis(port=ports["RUN_REDIS_PORT"], password=secrets["REDIS_PASSWORD"])
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=ports["RUN_REDIS_PORT"]).ping()
        m = envelope("notification.created", {"user_id": 2, "title": "Hello", "message": "from the test"})
        assert publish_raw(r, "notifications", m) == 1
        flower = f"http://127.0.0.1:{ports['FLOWER_PORT']}"
        assert requests.get(f"{flower}/api/tasks", timeout=5).status_code == 401
        info = wait_for(lambda: (resp := requests.get(f"{flower}/api/task/info/{m['id']}", auth=(flower_user, flower_pw),
                                                      timeout=5)).ok and resp.json().get("state") == "SUCCESS"
                        and resp.json(), timeout=30, what="the task in Flower")
        assert (info["name"], info["uuid"]) == ("notifications", m["id"])
        metrics = scrape(ports["BRIDGE_METRICS_PORT"])
        assert metrics['eclean_bridge_events_enqueued_total{topic="notifications"}'] >= 1
        web = f"http://127.0.0.1:{ports['WEB_PORT']}"
        assert requests.get(f"{web}/healthz", timeout=5).json()["status"] == "ok"
        session = requests.Session()
        login = session.get(f"{web}/admin/login/", timeout=5)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        page = session.post(f"{web}/admin/login/?next=/admin/core/notification/", timeout=5,
                            data={"username": "admin", "password": admin_pw, "csrfmiddlewaretoken": token,
                                  "next": "/admin/core/notification/"}, headers={"Referer": f"{web}/admin/login/"})
        assert page.status_code == 200 and m["id"] in page.text  # the notification, listed by its event
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()
    assert not _port_open(ports["RUN_REDIS_PORT"]), "Ctrl-C stopped Redis too"
    assert not _port_open(ports["WEB_PORT"]) and not _port_open(ports["FLOWER_PORT"])
    assert "redis stopped" in log()
