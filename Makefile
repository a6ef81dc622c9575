# `make test` builds .venv when it is missing or older than pyproject.toml, installs chromium and
# iproute2 when missing, then runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test browser iproute2 run lint bench clean

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

# tests/multihost/ runs each host in a network namespace of its own, made with `ip`; installed here
# when missing.
iproute2:
	command -v ip >/dev/null || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends iproute2)

test: $(STAMP) browser iproute2
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
