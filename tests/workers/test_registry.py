"""One topic list (workers/topics.py): queues, tasks and handler modules all
derive from it; the delivery options come from settings, stated once."""

from django.conf import settings

from workers import envelope, topics
from workers.celery import app
from workers.handlers import BY_TOPIC
from workers.tasks import TOPIC_TASKS


def test_queues_tasks_and_handlers_all_come_from_the_one_topic_list():
    assert tuple(settings.TOPIC_QUEUES) == topics.TOPICS == envelope.TOPICS
    assert [q.name for q in app.conf.task_queues] == list(topics.TOPICS)
    assert list(TOPIC_TASKS) == list(BY_TOPIC) == list(topics.TOPICS)
    for topic, task in TOPIC_TASKS.items():
        assert task.name == topic and task.queue == topic
        assert BY_TOPIC[topic].__name__ == f"workers.handlers.{topic}"
        assert set(BY_TOPIC[topic].HANDLERS) == set(envelope.types_of(topic))


def test_every_topic_task_takes_its_delivery_options_from_settings():
    for task in TOPIC_TASKS.values():
        assert task.acks_late is settings.CELERY_TASK_ACKS_LATE is True
        assert task.reject_on_worker_lost is settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
        assert task.ignore_result is settings.CELERY_TASK_IGNORE_RESULT is True
        assert task.acks_on_timeout is settings.CELERY_TASK_ACKS_ON_TIMEOUT is False
