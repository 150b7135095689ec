# c3d-distill — one-command set-up. `make demo` and `make test` are all a new user needs.
#
#   make install   system packages (as root; otherwise prints the command), .venv, Python deps, the
#                  Rust extension in release mode. Idempotent: a second run takes seconds.
#   make demo      install, then the demo on the synthetic set (see README.md)
#   make test      install, then cargo test and pytest
#   make bench     install, then the benchmarks (JSON in benches/results/), then the docs' tables
#                  rendered from it (tools/render_tables.py)
#   make wheel     install, then an abi3 wheel in dist/ that carries FFmpeg and the libraries it needs:
#                  `pip install dist/c3d_distill-*.whl` on Linux x86_64 with glibc >= 2.35 and
#                  Python >= 3.11, no Rust or FFmpeg there
#   make lint      ruff, cargo fmt --check, cargo clippy -D warnings

SHELL := /bin/bash
.DEFAULT_GOAL := help
export PATH := $(HOME)/.cargo/bin:$(PATH)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
EXT := python/c3d_distill/_native.abi3.so
RUST_SRC := Cargo.toml $(wildcard Cargo.lock) $(wildcard rust/*.rs rust/*/*.rs rust/*/*/*.rs)

# What the build and the tests need from Debian: FFmpeg's libraries and headers (the Rust binding
# links them), the ffmpeg/ffprobe commands (test oracles, encoders of the synthetic set), pkg-config
# and libclang (bindgen reads the FFmpeg headers).
SYS_PKGS := ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
            libavfilter-dev libavdevice-dev pkg-config clang libclang-dev

.PHONY: help install system demo test test-fast bench wheel lint clean

help:
	@sed -n '1,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

install: system $(STAMPS)/pydeps $(EXT)

system:
	@missing=$$(for p in $(SYS_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo -n "$$p "; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing system packages: $$missing"; \
	    echo "run:  sudo apt-get update && sudo apt-get install -y $$missing"; exit 1; \
	  fi; \
	fi

# Python dependencies come from pyproject.toml (runtime + the `compare`, `export` and `dev` extras), read with
# tomllib so the list lives in one place.
$(STAMPS)/pydeps: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  print("\n".join(p["dependencies"] + [d for e in ("compare", "export", "dev") for d in p["optional-dependencies"][e]]))' \
	  > $(VENV)/requirements.txt
	$(BIN)/python -m pip install -q -r $(VENV)/requirements.txt
	@mkdir -p $(STAMPS) && touch $@

$(EXT): $(RUST_SRC) pyproject.toml $(STAMPS)/pydeps
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release -q
	@touch $@

demo: install
	$(BIN)/c3d-distill demo

test: install
	cargo test -q
	$(BIN)/python -m pytest -q

test-fast: install
	cargo test -q
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benches/run_all.py
	$(BIN)/python tools/render_tables.py

# The wheel: maturin builds it against the system FFmpeg (reusing the extension `install` compiled),
# then auditwheel copies in every shared library it loads, under hashed names in c3d_distill.libs/ so
# they never clash with another copy in the process (PyAV's, the system's), and points the RUNPATHs
# there. tools/repair_wheel.py says why it bundles X11 and GLib too, which plain auditwheel would not.
# The tag is the lowest auditwheel accepts for Debian 12's libraries (`auditwheel show` names it).
WHEEL_PLAT := manylinux_2_35_x86_64
WHEEL_RAW := target/wheel-unrepaired

wheel: install
	rm -rf $(WHEEL_RAW) dist/c3d_distill-*.whl
	$(BIN)/maturin build --release -q --compatibility linux --auditwheel skip -i $(BIN)/python -o $(WHEEL_RAW)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python tools/repair_wheel.py --plat $(WHEEL_PLAT) -w dist \
	  $(WHEEL_RAW)/c3d_distill-*.whl
	@ls -l dist/c3d_distill-*.whl

lint: install
	$(BIN)/ruff check python tests benches tools
	cargo fmt --check
	cargo clippy --all-targets -q -- -D warnings
	cargo clippy --all-targets --features python -q -- -D warnings

clean:
	rm -rf target $(STAMPS) $(EXT) dist
