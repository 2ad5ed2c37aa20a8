# The two commands a newcomer needs: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: run test lint bench soak screenshot screenshots bundle clean mqtt-broker

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

# The MQTT broker the integration tests start on loopback (Debian's mosquitto): installed when
# missing and we are root (CI, a fresh container); otherwise the MQTT tests skip and say why.
mqtt-broker:
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto; \
	else echo "mosquitto not installed (sudo apt-get install mosquitto): MQTT tests will skip"; fi

test: $(VENV)/.dev-installed mqtt-broker
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	QT_QPA_PLATFORM=offscreen TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/pytest -q -ra

# bench/results/{engines_table,ort_routes,pipeline_e2e,scaling,gui_stall}.md + .json (docs/performance.md)
bench: $(VENV)/.dev-installed
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench engines
	$(PY) -m bench routes
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m bench pipeline
	$(PY) -m bench scaling
	QT_QPA_PLATFORM=offscreen $(PY) -m bench gui

# 30 minutes headless on the Viky camera with the database: RSS, rows, books -> bench/results/soak.md
# (a 2-minute version runs in `make test`: tests/test_soak.py).
soak: $(VENV)/.run-installed
	$(PY) -m bench.soak --minutes 30 --out bench/results/soak.md

# Needs: apt-get install -y xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0
screenshot: $(VENV)/.run-installed
	xvfb-run -a -s "-screen 0 1600x1000x24" $(VENV)/bin/inspection-station gui --screenshot docs/screenshot.png

# The Run screen (PASS, NG) and every Setup workspace at 1280x720 and 1920x1080, plus the Run
# screen at 4K with Qt's HiDPI scaling (QT_SCALE_FACTOR=2), into docs/screenshots/.
screenshots: $(VENV)/.run-installed
	xvfb-run -a -s "-screen 0 1920x1080x24" $(PY) -m app.ui.screenshots --out docs/screenshots --size 1280x720 --size 1920x1080
	QT_SCALE_FACTOR=2 xvfb-run -a -s "-screen 0 3840x2160x24" $(PY) -m app.ui.screenshots --out docs/screenshots --size 1920x1080 --suffix 4k --only run

# PyInstaller one-folder bundle -> dist/inspection-station/ (about 45 s here; tests/test_bundle.py
# builds and runs it too).
bundle: $(VENV)/.dev-installed
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN build.spec

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache .mypy_cache
