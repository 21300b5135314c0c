"""The env file `make run` writes, loaded by settings (e_clean_backend/env.py):
present -> used, the real environment wins, off in the test suite."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from e_clean_backend.env import env_file_path, load_env_file, read_env_file

from ..support import REPO


def write(path, text):
    path.write_text(text)
    return path


def test_values_fill_only_what_the_environment_lacks(tmp_path):
    write(tmp_path / "env", "# make run\nREDIS_PORT=6390\nREDIS_PASSWORD='a b$c'\nDJANGO_DEBUG=0\n")
    environ = {"ECLEAN_RUN_DIR": str(tmp_path), "REDIS_PORT": "7000"}
    assert load_env_file(environ) == tmp_path / "env"
    assert environ == {"ECLEAN_RUN_DIR": str(tmp_path), "REDIS_PORT": "7000", "REDIS_PASSWORD": "a b$c",
                       "DJANGO_DEBUG": "0"}


def test_no_file_is_no_change(tmp_path):
    environ = {"ECLEAN_RUN_DIR": str(tmp_path)}
    assert load_env_file(environ) is None and environ == {"ECLEAN_RUN_DIR": str(tmp_path)}


@pytest.mark.parametrize("off", ["", "off", "0", "none"])
def test_eclean_env_file_off_skips_it(tmp_path, off):
    write(tmp_path / "env", "REDIS_PORT=6390\n")
    environ = {"ECLEAN_RUN_DIR": str(tmp_path), "ECLEAN_ENV_FILE": off}
    assert load_env_file(environ) is None and "REDIS_PORT" not in environ


def test_a_named_file_must_exist(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="ECLEAN_ENV_FILE"):
        env_file_path({"ECLEAN_ENV_FILE": str(tmp_path / "missing")})


def test_a_broken_line_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "env", "A=1\nnot a setting\n")
    with pytest.raises(ImproperlyConfigured, match="line 2"):
        read_env_file(path)


def test_the_suite_never_reads_a_developers_run_env(temp_settings):
    assert os.environ["ECLEAN_ENV_FILE"] == "off" and temp_settings.ENV_FILE is None


def test_a_second_terminal_gets_the_file_and_its_own_exports_win(tmp_path):
    """manage.py in a fresh process: settings come from the file, except what
    the environment sets itself."""
    write(tmp_path / "env", f"DATABASE_URL=sqlite:///{tmp_path}/from-file.sqlite3\nDJANGO_SECRET_KEY=from-file\n"
                            "REDIS_HOST=127.0.0.1\nREDIS_PORT=6390\nREDIS_PASSWORD=from-file\nDJANGO_DEBUG=0\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "DATABASE_", "DJANGO_", "ECLEAN_", "CELERY_", "EVENTS_"))}
    env.update(ECLEAN_RUN_DIR=str(tmp_path), DJANGO_DEBUG="1")
    code = ("from django.conf import settings; print(settings.DATABASES['default']['NAME']); "
            "print(settings.DEBUG); print(settings.REDIS_URL.rsplit('@', 1)[1]); print(settings.ENV_FILE)")
    result = subprocess.run([sys.executable, "backend/manage.py", "shell", "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-4:] == [f"{tmp_path}/from-file.sqlite3", "True", "127.0.0.1:6390/0",
                                          str(tmp_path / "env")]
