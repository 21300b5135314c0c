"""`make bench` writes where git does not look; the committed results change
only through `make bench-record`."""

from __future__ import annotations

import subprocess

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
