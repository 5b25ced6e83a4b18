# CardiacSuite: two commands on a fresh machine.
#   make demo   build the environment (pinned) and run the main job on a phantom made on the spot
#   make test   build the environment (pinned) and run the test suite (needs ../shared/data)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo

.PHONY: demo test bench validate clean-venv

$(STAMP): requirements/lock.txt requirements/constraints.txt pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt -c requirements/constraints.txt
	# myopari ships the published short-axis weights; its declared dependencies (napari, Qt, CUDA) are not wanted.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps myopari==0.1.6
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	# Put the module folders on the path as Slicer does, so each Lib package imports under its own name.
	$(BIN)/python Utilities/extension_modules.py --pth
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cardiacsuite demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python Testing/benchmarks/bench_cmr_function.py --model sax-fast-unet --repeat 3 --processes 3
	$(BIN)/python Testing/benchmarks/bench_cmr_function.py --model myopari-acdc-tiramisu --repeat 1 --processes 1

validate: $(STAMP)
	$(BIN)/python Testing/validation/run_sunnybrook.py

clean-venv:
	rm -rf $(VENV)
