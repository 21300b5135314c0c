# `make run` and `make test` set themselves up: a virtualenv in .venv with the
# pinned requirements, reinstalled when a requirements file changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PATHS := $(VENV)/.code-paths

.PHONY: run manage shell redis-cli test test-sqlite test-postgres bench bench-record clean

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

# The venv knows where the code is, as an editable install would: the
# repository root (workers, bench, devtools) and backend/ (the Django project),
# for every process it runs (make run, the tests, the README's commands).
$(PATHS): $(STAMP)
	$(PY) -c 'import pathlib, sys, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "eclean.pth").write_text("\n".join(sys.argv[1:]) + "\n")' "$(CURDIR)" "$(CURDIR)/backend"
	touch $(PATHS)

run: $(PATHS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m devtools.run

# From another terminal while `make run` runs: its settings come from the env
# file it writes (.run/env), so no exports are needed.
#   make manage ARGS="publish_event jobs job.created '{\"job_id\": 1}'"
manage: $(PATHS)
	$(PY) backend/manage.py $(ARGS)

shell: $(PATHS)
	$(PY) backend/manage.py shell $(ARGS)

# redis-cli on make run's Redis; the password travels in REDISCLI_AUTH, never on a command line.
redis-cli: $(PATHS)
	$(PY) -m devtools.redis_cli $(ARGS)

# The whole suite on SQLite, then the database tests again on PostgreSQL
# (TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test).
# CI sets REQUIRE_POSTGRES=1: no PostgreSQL is then a failure, not a skip.
test: $(PATHS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m devtools.testrun $(PYTEST_ARGS)

# Results go to bench/out/ (git-ignored); `make bench-record` writes the
# committed copy in bench/results/ on purpose.
bench: $(PATHS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench $(BENCH_ARGS)

bench-record: $(PATHS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench --out bench/results $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run .pytest_cache
