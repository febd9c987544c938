# VM Manager. Works on a fresh Debian 12 machine, as root, without systemd:
#   make run            install what is missing, then start the TUI (ARGS="..." for the CLI)
#   make test           install, start libvirtd if needed, pytest (all of tests/), ruff, lint-imports
#                       and mypy, stop it again
#   make lint           ruff, lint-imports (the import contracts), mypy (core)
#   make bench          scripts/bench.py (TUI), bench_provision.py, bench_console.py, bench_load.py
#                       (a class of 200 signing in, consoles on 30 VMs), on real VMs;
#                       bench_database.py (three writers at once on the shared SQLite file)
#   make screenshots    scripts/screenshots.py, likewise
#   make soak           scripts/soak.py: the TUI and serve under interleaved workloads on real VMs,
#                       bounded by SOAK_MINUTES (default 60); slopes and counts, then the fuzzing's
#                       long profile (VMM_FUZZ_PROFILE=soak)
#   make template-tiny  scripts/build_template_tiny.sh: the tiny template (kernel + busybox initramfs)
#                       into $VMM_TEMPLATE_DIR/tiny (default ~/.local/share/vm-manager/templates/tiny)
#   make template-debian  scripts/build_template_debian.sh: a Debian 12 cloud template (mmdebstrap,
#                       cloud-init, guest agent) into $VMM_TEMPLATE_DIR/debian
# PYTEST_ARGS="-k halt" narrows make test.
SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LIBVIRTD := scripts/libvirtd.sh
ARGS ?=
PYTEST_ARGS ?=
SOAK_MINUTES ?= 60

.PHONY: run test lint bench soak screenshots template-tiny template-debian setup setup-run system-deps system-deps-run libvirtd-start libvirtd-stop libvirtd-status clean

# setup: everything the tests need; setup-run: only what the app needs (no daemon is installed).
setup: system-deps $(STAMP)
setup-run: system-deps-run $(STAMP)

system-deps: system-deps-run
	@scripts/setup.sh system

system-deps-run:
	@scripts/setup.sh system run

# Rebuilt only when pyproject.toml is newer than the stamp (or the venv is gone).
$(STAMP): pyproject.toml | system-deps-run
	@scripts/setup.sh venv

run: setup-run
	$(VENV)/bin/vm-manager $(ARGS)

test: setup
	VMM_REQUIRE_INTEGRATION=1 $(LIBVIRTD) run scripts/test.sh $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: setup
	$(LIBVIRTD) run --optional $(PY) scripts/bench.py $(ARGS)
	$(LIBVIRTD) run $(PY) scripts/bench_provision.py
	$(LIBVIRTD) run --optional $(PY) scripts/bench_console.py
	$(LIBVIRTD) run --optional $(PY) scripts/bench_load.py
	$(PY) scripts/bench_database.py

# The full counts take about 25 minutes here; SOAK_MINUTES stops it earlier (it says how much it did).
soak: setup
	$(LIBVIRTD) run $(PY) scripts/soak.py --minutes $(SOAK_MINUTES)
	VMM_FUZZ_PROFILE=soak $(PY) -m pytest -q tests/fuzz

screenshots: setup
	$(LIBVIRTD) run --optional $(PY) scripts/screenshots.py $(ARGS)

# Downloads two Debian packages (kernel, busybox-static); does nothing while the outputs are current.
template-tiny:
	scripts/build_template_tiny.sh

# Downloads about 205 Debian packages (about 2 min, 180 MiB); does nothing while the outputs are
# current, and never replaces a base image VMs may be backed by (VMM_DEBIAN_FORCE=1 does).
template-debian:
	scripts/build_template_debian.sh

# For working by hand: start the daemons and leave them running; stop those that start started.
libvirtd-start:
	$(LIBVIRTD) start

libvirtd-stop:
	$(LIBVIRTD) stop

libvirtd-status:
	$(LIBVIRTD) status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
