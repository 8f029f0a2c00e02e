# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench install redis-check browser-check clean chaos fuzz cron-diff

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

redis-check:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server (>= 7.0) is required. Install it with: sudo apt-get install redis-server"; exit 1; }

# The dashboard tests drive a real Chromium: the system one (ENGINE_TEST_CHROMIUM, default
# /usr/bin/chromium) or Playwright's; installs one if it can, else says which command to run.
browser-check: $(STAMP)
	@$(BIN)/python -m tests.browser

run: $(STAMP)
	$(BIN)/python -m engine run

test: $(STAMP) redis-check browser-check
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The long chaos suite (several minutes): faults injected into real local Redis topologies,
# one line of figures per scenario (also appended to $(CHAOS_FIGURES)). Not part of `make test`.
CHAOS_FIGURES ?= artifacts/chaos-figures.txt
chaos: $(STAMP) redis-check
	mkdir -p $(dir $(CHAOS_FIGURES))
	CHAOS_LONG=1 CHAOS_FIGURES=$(abspath $(CHAOS_FIGURES)) $(BIN)/python -m pytest -q -p no:cacheprovider -s -m chaos tests/chaos/test_chaos_long.py $(PYTEST_ARGS)

# The long model-based run (minutes): producers, workers, admin calls and faults in a random
# order per seed, every invariant checked after every step (tests/model/). Replay one seed
# with `make fuzz FUZZ_SEEDS=17`; exits non-zero if any seed breaks an invariant.
FUZZ_SEEDS ?= 101 102 103 104 105
FUZZ_STEPS ?= 300
FUZZ_RANDOM_RATE ?= 0.01
fuzz: $(STAMP) redis-check
	$(BIN)/python -m tests.model --steps $(FUZZ_STEPS) --random-rate $(FUZZ_RANDOM_RATE) $(foreach s,$(FUZZ_SEEDS),--seed $(s))

# engine.cron against cronsim and cron-parser (npm, installed into tests/cron_node by npm ci):
# CRON_DIFF_CASES random cases per seed, mostly on DST transitions; prints the figures.
CRON_DIFF_SEEDS ?= 1,2,3,4
CRON_DIFF_CASES ?= 1500
cron-diff: $(STAMP)
	cd tests/cron_node && npm ci --no-audit --no-fund --silent
	$(BIN)/python -m tests.cron_differential --node --seeds $(CRON_DIFF_SEEDS) --cases $(CRON_DIFF_CASES)

lint: $(STAMP)
	$(BIN)/ruff check engine tests bench
	$(BIN)/ruff format --check engine tests bench
	$(BIN)/mypy

# bullmq==3.4.4 pins croniter==2.0.7 (we pin 7.0.0; it uses croniter only for repeatable
# jobs, which the benchmark never runs), so it goes in with --no-deps; see pyproject's bench.
bench: $(STAMP) redis-check
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/pip install --quiet --no-deps bullmq==3.4.4
	$(BIN)/python -m bench quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
