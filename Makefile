# One command each: install, run the demo job, run the tests.
# `make demo` and `make test` install first when nothing is installed yet (or pyproject.toml changed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.scenewatch-installed
# Debian packages the tests and services use: video tools, the Redis and MQTT servers, a browser.
DEBIAN_PACKAGES := ffmpeg redis-server mosquitto chromium chromium-driver
DEBIAN_COMMANDS := ffmpeg redis-server /usr/sbin/mosquitto chromium chromedriver

.PHONY: install test demo lint system-packages

install: $(STAMP)

$(STAMP): pyproject.toml
	$(MAKE) --no-print-directory system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	@# trackers installs opencv-python (the GUI build) beside rapidocr's opencv-python-headless; both
	@# write site-packages/cv2/. The headless files go back last and the GUI build must not be active.
	$(BIN)/pip install --force-reinstall --no-deps "opencv-python-headless==$$($(BIN)/python -c \
		'from importlib.metadata import version; print(version("opencv-python-headless"))')"
	$(BIN)/python -c 'import re, cv2; assert re.search(r"GUI:\s+NONE", cv2.getBuildInformation()), \
		"a GUI build of OpenCV is active: reinstall opencv-python-headless"'
	touch $(STAMP)

system-packages:
	@missing=""; for c in $(DEBIAN_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "missing:$$missing; installing the Debian packages $(DEBIAN_PACKAGES)"; \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES); \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES); \
	else echo "error: installing$$missing needs root: run  sudo apt-get install -y $(DEBIAN_PACKAGES)  then make again" >&2; exit 1; fi

# The suite runs on every core (at most 4), a test file per worker: its fixtures are built once.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	$(BIN)/python demos/quickstart.py
