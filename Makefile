# mlrollout — every target installs what it needs on a fresh machine (venv, Debian packages,
# Kubernetes binaries built from pinned Go modules and cached under the user cache dir).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYPROJECT_HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
VENV_STAMP := $(VENV)/.installed-$(PYPROJECT_HASH)
PYTEST_ARGS ?=
# Every `python -m` here runs with -P: the working directory holds operator/, which must never be
# imported in place of the standard library's `operator` (a fresh venv has not preloaded it).

.PHONY: constraints help setup venv system-deps k8s-binaries prometheus traefik test unit lint typecheck demo demo-down cluster-up cluster-down clean images

help:
	@echo "make demo   - bring the local stack up (real kubelet node) and walk through a rollout on real pods"
	@echo "make demo-down - stop everything the demo started"
	@echo "make test   - lint, typecheck and the whole test suite (unit, cluster, real pods, images)"
	@echo "make setup  - only install/build what the two above need"

setup: venv system-deps k8s-binaries prometheus helm traefik

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -P -m venv $(VENV)
	$(PY) -P -m pip install -q --upgrade pip setuptools wheel
	$(PY) -P -m pip install -q -c constraints.txt -e '.[operator,serving,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

system-deps:
	bash hack/install-system-deps.sh

# Re-resolve the newest versions the ranges in pyproject allow, then pin them (run the suite after).
constraints:
	rm -rf .venv-resolve && $(PYTHON) -P -m venv .venv-resolve
	.venv-resolve/bin/python -P -m pip install -q -e '.[operator,serving,dev]'
	{ head -2 constraints.txt; .venv-resolve/bin/python -P -m pip freeze --exclude-editable | grep -v '^mlrollout'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .venv-resolve

k8s-binaries:
	@bash hack/build-k8s.sh >/dev/null && echo "kubernetes binaries: $$(bash hack/build-k8s.sh --print-bin)"

# Prometheus 3 (Kubernetes service discovery), built from its Go module and cached like the above.
prometheus:
	@bash hack/build-prometheus.sh >/dev/null && echo "prometheus binaries: $$(bash hack/build-prometheus.sh --print-bin)"

# Traefik (the real proxy for the gatewayAPI router) and the Gateway API CRDs it is built against.
traefik:
	@bash hack/build-traefik.sh >/dev/null && echo "traefik: $$(bash hack/build-traefik.sh --print-dir)"

# Helm 3 for the chart in charts/mlrollout, built from its Go module and cached like the above.
helm:
	@bash hack/build-helm.sh >/dev/null && echo "helm: $$(bash hack/build-helm.sh --print-bin)/helm"

# mypy sees the folder -> package mapping through a symlink tree (it cannot run setuptools' import hook).
.typecheck/mlrollout:
	mkdir -p .typecheck/mlrollout
	ln -sfn ../../operator .typecheck/mlrollout/operator
	ln -sfn ../../serving .typecheck/mlrollout/serving

typecheck: venv .typecheck/mlrollout
	$(VENV)/bin/mypy -p mlrollout.operator -p mlrollout.serving

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check operator serving hack tests benchmarks

unit: venv
	$(VENV)/bin/pytest -m "not cluster and not image and not mlflow and not realnode" $(PYTEST_ARGS)

test: setup lint typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Real pods on the local stack's kubelet node (root); images are built and imported on first use.
demo: setup
	$(PY) hack/demo.py

demo-down:
	$(PYTHON) hack/demo.py down

# Both images on a public base: $(IMAGE_PREFIX)mlrollout-serving:$(IMAGE_TAG) and ...-operator.
#   make images                                        # python:3.11-slim, tag = the package version
#   make images IMAGE_PREFIX=registry.example/ PUSH=1  # and push them
#   make images BASE_IMAGE=$$(hack/base-image.sh)      # no registry at all (debootstrap base)
IMAGE_PREFIX ?=
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
BASE_IMAGE ?= python:3.11-slim
DOCKER_BUILD_FLAGS ?=
images:
	docker build $(DOCKER_BUILD_FLAGS) --build-arg BASE_IMAGE=$(BASE_IMAGE) -f Dockerfile.serving -t $(IMAGE_PREFIX)mlrollout-serving:$(IMAGE_TAG) .
	docker build $(DOCKER_BUILD_FLAGS) --build-arg BASE_IMAGE=$(BASE_IMAGE) -f Dockerfile.operator -t $(IMAGE_PREFIX)mlrollout-operator:$(IMAGE_TAG) .
	$(if $(PUSH),docker push $(IMAGE_PREFIX)mlrollout-serving:$(IMAGE_TAG) && docker push $(IMAGE_PREFIX)mlrollout-operator:$(IMAGE_TAG),)
	@echo "images: $(IMAGE_PREFIX)mlrollout-serving:$(IMAGE_TAG) $(IMAGE_PREFIX)mlrollout-operator:$(IMAGE_TAG)"

cluster-up: k8s-binaries
	@$(PYTHON) hack/local_cluster.py up

cluster-down:
	@$(PYTHON) hack/local_cluster.py down

clean: demo-down
	rm -rf .typecheck .mypy_cache .ruff_cache .pytest_cache build *.egg-info
