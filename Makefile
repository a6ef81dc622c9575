# `make test` builds .venv when it is missing or older than pyproject.toml, installs chromium when
# missing, then runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test browser run lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# tests/api/test_docs_offline.py renders /docs in Debian's chromium; installed here when missing.
browser:
	command -v chromium >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends chromium)

test: $(STAMP) browser
	$(BIN)/python -m pytest

run: $(STAMP)
	$(BIN)/comfy-temporal dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/short_jobs.py

clean:
	rm -rf $(VENV)
