# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create the virtualenv in .venv and install uncia into it on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.uncia-installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# A whole simulated field site: broker, gateway + station hub + staff page, LoRa collars, a serial GPS,
# two paired camera units. Prints the page's address. Ctrl-C to stop (or DURATION=60 make demo).
demo: $(STAMP)
	$(VENV)/bin/uncia demo $(if $(DURATION),--duration $(DURATION),)

# Lint, then the whole test suite (simulated hardware, real pseudo-terminals, real brokers).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.relay

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
