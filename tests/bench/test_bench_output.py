"""`make bench` writes where git does not look; the committed results change
only through `make bench-record`."""

from __future__ import annotations

import subprocess

import pytest

from tests.support import REPO


def test_default_output_is_git_ignored_and_the_record_target_writes_the_tracked_copy():
    from bench.harness import parse_args

    out = parse_args([]).out
    assert out == REPO / "bench" / "out"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "latest.json")], cwd=REPO)
    assert ignored.returncode == 0, "bench/out/ must be git-ignored"
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "bench/results/latest.md"], cwd=REPO,
                             capture_output=True)
    assert tracked.returncode == 0, "the committed results stay tracked"
    recipe = subprocess.run(["make", "-n", "bench-record"], cwd=REPO, capture_output=True, text=True)
    assert "--out bench/results" in recipe.stdout


def test_the_end_to_end_rows_run_the_shipped_worker_layout():
    """The e2e rows measure what `make run` and compose run: WORKER_PROCESSES
    workers of one pool process per core each (CELERY_WORKER_CONCURRENCY=0,
    Celery's default), logging at INFO like the Procfile's."""
    import os

    from django.conf import settings

    assert settings.CELERY_WORKER_CONCURRENCY == 0
    from bench.harness import E2E_LAYOUT, layout_workers
    from devtools.procs import WORKER_PROCESSES

    workers = layout_workers(E2E_LAYOUT)
    assert len(workers) == WORKER_PROCESSES
    names = set()
    for args, env in workers:
        assert args[args.index("-c") + 1] == str(os.cpu_count()) and args[-2:] == ["-l", "INFO"] and env == {}
        names.add(args[args.index("-n") + 1])
    assert len(names) == WORKER_PROCESSES
    quiet = layout_workers(E2E_LAYOUT + "-warning")
    assert [a[:-2] for a, _ in quiet] == [a[:-2] for a, _ in workers]
    assert all(a[-2:] == ["-l", "WARNING"] for a, _ in quiet)
    with pytest.raises(ValueError, match="unknown worker layout"):
        layout_workers("3x")
