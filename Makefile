# The two commands a newcomer needs: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: run test lint bench screenshot clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.run-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[train,dev]'
	touch $@ $(VENV)/.run-installed

# GUI when a display exists, otherwise the headless demo run (the CLI decides).
run: $(VENV)/.run-installed
	$(VENV)/bin/inspection-station

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	QT_QPA_PLATFORM=offscreen TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/pytest -q -ra

bench: $(VENV)/.dev-installed
	$(PY) -m bench.bench_engines --model resources/models/dagm-class1.onnx --out bench/results/engines.md
	$(PY) -m bench.bench_pipeline --out bench/results/pipeline.md

# Needs: apt-get install -y xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0
screenshot: $(VENV)/.run-installed
	xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/inspection-station gui --screenshot docs/screenshot.png

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
