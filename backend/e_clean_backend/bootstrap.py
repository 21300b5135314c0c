"""The one start-up of Django for the processes that are not ``manage.py``.

The bridge, the health checks, the bench scripts and the test suite call
:func:`setup` first. Where the code lives (the repository root and
``backend/``) is told by whoever installs or starts the process, not by an
import: the virtualenv's ``eclean.pth`` (written by the Makefile), the
Dockerfile's ``PYTHONPATH``, pytest.ini's ``pythonpath`` for the suite.
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
