# Everything a new user needs: `make demo` and `make test` install what they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel lies on this machine's disk; an unpinned torch would pull a CUDA build of several GB.
TORCH_VERSION ?= 2.13.0
STAMP  := $(VENV)/.installed-stamp

.PHONY: install browser-deps calibration-deps demo scan-demo test lint typecheck unit integration bench bench-detector bench-scan eval bench-pipeline clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m moderation.demo

# Debian's Chromium for the browser tests (Playwright drives it; no browser download from the web).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "warning: could not install Debian's chromium; the browser tests will be skipped (they say so)"

# Human text Debian ships, for the false-positive calibration (tests/calibration/corpus.py).
calibration-deps:
	@{ test -f /usr/share/games/fortunes/songs-poems && test -f /usr/share/man/man3/printf.3.gz; } || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq manpages manpages-dev fortunes >/dev/null; } \
		|| echo "warning: could not install manpages, manpages-dev, fortunes; the calibration tests will be skipped (they say so)"

scan-demo: install
	$(BIN)/moderation scan --config moderation/data/demo.toml --input moderation/data/sample_posts.jsonl

lint: install
	$(BIN)/ruff check moderation workers tests migrations
	$(BIN)/ruff format --check moderation workers tests migrations

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

test: lint typecheck browser-deps calibration-deps
	$(BIN)/pytest tests

bench: bench-detector bench-scan eval

bench-detector: install
	$(BIN)/python -m tests.benchmarks.bench_detector

bench-scan: install
	$(BIN)/python -m tests.benchmarks.bench_scan

eval: install
	$(BIN)/python -m tests.benchmarks.eval_quality

bench-pipeline: install
	$(BIN)/python -m tests.benchmarks.bench_pipeline

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
