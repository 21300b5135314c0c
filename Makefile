# `make run` and `make test` set themselves up: a virtualenv in .venv with the
# pinned requirements, reinstalled when a requirements file changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres bench clean

$(STAMP): requirements/base.txt requirements/dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

run: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m devtools.run

# The whole suite on SQLite, then the database tests again on PostgreSQL
# (TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test).
# CI sets REQUIRE_POSTGRES=1: no PostgreSQL is then a failure, not a skip.
test: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m devtools.testrun $(PYTEST_ARGS)

bench: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run .pytest_cache
