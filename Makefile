# bulletin: `make demo` runs the whole job on embedded defaults, `make test` runs tests and lint.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo

.PHONY: demo test lint typecheck pytest clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m bulletin.demo $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The 15 slowest tests are listed after every run; PYTEST_ARGS='-m "not slow"' leaves out the slow ones.
pytest: $(STAMP)
	$(BIN)/pytest --durations=15 $(PYTEST_ARGS)

# Lint, types and tests, then the total time they took.
test: $(STAMP)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint typecheck pytest; status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s in total (exit status $$status)"; \
	exit $$status

bench: $(STAMP)
	$(BIN)/python bench/import_subscribers.py
	$(BIN)/python bench/render_variants.py
	@command -v smtp-sink >/dev/null || test -x /usr/sbin/smtp-sink || { echo "bench/send_throughput.py needs Debian's postfix (smtp-sink, smtp-source)"; exit 1; }
	$(BIN)/python bench/send_throughput.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
