# guest-attestation-operator — developer and CI entry points. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/guest-attestation-operator
ADVISORY_DB ?= $(abspath ../shared/rustsec-advisory-db)
CARGO_DENY_VERSION := 0.20.2
CHART := charts/guest-attestation-operator

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the operator, crdgen and the Azure emulator
	$(CARGO) build --workspace --all-targets

.PHONY: fmt
fmt: ## Format the Rust code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Fail when the Rust code is not formatted
	$(CARGO) fmt --all -- --check

.PHONY: clippy
clippy: ## Clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

.PHONY: deny
deny: ## cargo deny against the offline RustSec advisory database
	@command -v cargo-deny >/dev/null || $(CARGO) install cargo-deny --locked --version $(CARGO_DENY_VERSION)
	scripts/cargo-deny.sh "$(ADVISORY_DB)" "$(CACHE_DIR)/advisory-dbs"

.PHONY: lint
lint: fmt-check clippy deny ## fmt check, clippy -D warnings, cargo deny

.PHONY: crds
crds: ## Regenerate crds/*.yaml (and the chart's copy) from the Rust types
	$(CARGO) run --quiet --bin crdgen -- crds
	@if [ -d $(CHART)/crds ]; then cp crds/*.yaml $(CHART)/crds/; fi

.PHONY: check-generated
check-generated: ## Fail when the committed CRDs differ from crdgen's output
	$(CARGO) test --test crds committed_crds_match_crdgen

.PHONY: control-plane
control-plane: ## Build kube-apiserver, etcd, kubectl, testenv and helm into the cache
	tests/control-plane/build.sh

.PHONY: test
test: ## All tests, against a real control plane started once for the run
	scripts/with-control-plane.sh $(CARGO) test --workspace --all-targets

.PHONY: ci
ci: lint test ## What .ci/run runs
