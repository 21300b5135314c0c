"""The one start-up of Django for the processes that are not ``manage.py``.

The bridge, the health checks, the bench scripts and the test suite call
:func:`setup` first. Where the code lives is set up by whoever starts the
process (``PYTHONPATH`` = the repository root and ``backend/``: the Makefile,
the Dockerfile, ``make run`` and pytest.ini set it), not by an import.
"""

from __future__ import annotations

import os

SETTINGS_MODULE = "e_clean_backend.settings"


def setup() -> None:
    """Point Django at the project's settings (unless the environment names
    others) and load the apps; a bad setting raises ImproperlyConfigured."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    import django

    django.setup()
