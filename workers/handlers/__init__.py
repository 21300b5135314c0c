"""One module per topic, named after it (workers/topics.py). Each declares
``RETRY`` (its retry policy) and ``HANDLERS`` (event type -> plain function
over a validated Event); ``workers.tasks`` turns each into that topic's
Celery task. A topic without its module fails here, at import."""

from importlib import import_module

from ..topics import TOPICS

# topic -> its handler module
BY_TOPIC = {topic: import_module(f"{__name__}.{topic}") for topic in TOPICS}
MODULES = tuple(BY_TOPIC.values())
