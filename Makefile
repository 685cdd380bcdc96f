# Set-up lives here so that the README's two commands stay true on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages that Qt's xcb platform needs under Xvfb
DISPLAY_DEBS := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 \
	libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libegl1 libgl1 \
	libdbus-1-3 libfontconfig1 libglib2.0-0
# Debian packages of the DICOM tests: a real archive (Orthanc with DICOMweb) and the validator dciodvfy
DICOM_DEBS := orthanc orthanc-dicomweb dicom3tools

.PHONY: demo test venv display dicom-tools selfcheck bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch and torchvision as a matching pair (timm imports torchvision)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[all,test]'
	touch $(STAMP)

venv: $(STAMP)

display:
	@if ! command -v Xvfb >/dev/null || ! dpkg -s libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DISPLAY_DEBS) >/dev/null; \
	fi

dicom-tools:
	@if ! command -v Orthanc >/dev/null || ! command -v dciodvfy >/dev/null || ! dpkg -s orthanc-dicomweb >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(DICOM_DEBS) >/dev/null; \
	fi

demo: $(STAMP)
	$(VENV)/bin/tonno demo --out tonno-demo

selfcheck: $(STAMP)
	$(VENV)/bin/tonno selfcheck

test: $(STAMP) display dicom-tools
	$(VENV)/bin/ruff check .
	TONNO_REQUIRE_DICOM_TOOLS=1 $(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/bench_reconstruct.py
