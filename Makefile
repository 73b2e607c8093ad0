# guest-attestation-operator — developer and CI entry points. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/guest-attestation-operator
# The offline RustSec copy sits beside the checkout (../shared); a clone elsewhere on this machine
# finds it at /work/shared.
ADVISORY_DB ?= $(firstword $(wildcard $(abspath ../shared/rustsec-advisory-db) /work/shared/rustsec-advisory-db) $(abspath ../shared/rustsec-advisory-db))
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

.PHONY: chart-lint
chart-lint: ## helm lint --strict and helm template of the chart (Helm v4 from the control-plane cache)
	@bin="$$(tests/control-plane/build.sh | tail -n1)"; \
	"$$bin/helm" lint --strict $(CHART); \
	"$$bin/helm" template guest-attestation-operator $(CHART) -n guest-attestation-system --include-crds > /dev/null; \
	"$$bin/helm" template guest-attestation-operator $(CHART) -n guest-attestation-system \
	  --set replicaCount=2 --set 'watchNamespaces={a,b}' --set networkPolicy.enabled=true \
	  --set metrics.serviceMonitor.enabled=true --set metrics.prometheusRule.enabled=true \
	  --set workloadIdentity.enabled=true --set workloadIdentity.clientId=00000000-0000-0000-0000-000000000000 > /dev/null; \
	for f in crds/*.yaml; do cmp -s "$$f" "$(CHART)/$$f" || { echo "$(CHART)/$$f differs from $$f; run make crds" >&2; exit 1; }; done; \
	echo "chart OK"

.PHONY: run
run: ## Run the operator against the current kubeconfig (text logs); more flags with ARGS="--namespace demo"
	$(CARGO) run --bin guest-attestation-operator -- --log-format text $(ARGS)

.PHONY: control-plane
control-plane: ## Build kube-apiserver, etcd, kubectl, testenv and helm into the cache
	tests/control-plane/build.sh

.PHONY: test
test: ## All tests, against a real control plane started once for the run
	scripts/with-control-plane.sh $(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

.PHONY: test-properties
test-properties: ## Property tests of the parsers and decoders that take hostile input (no cluster needed)
	$(CARGO) test --test properties

FUZZ_TARGETS := timestamp arm_id settings policy jws arm_json
FUZZ_SECONDS ?= 60

.PHONY: fuzz-check
fuzz-check: ## Build the fuzz targets (fuzz/) on stable, without running them
	$(CARGO) check --manifest-path fuzz/Cargo.toml --bins

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZ_SECONDS (needs nightly and cargo-fuzz: cargo install cargo-fuzz)
	for t in $(FUZZ_TARGETS); do $(CARGO) +nightly fuzz run "$$t" -- -max_total_time=$(FUZZ_SECONDS); done

.PHONY: ci
ci: lint test demo-check bench-ci fuzz-check ## What .ci/run runs

.PHONY: demo
demo: ## The whole story locally: control plane, Azure emulator, chart, operator, examples (make demo-down stops it)
	scripts/demo.sh

.PHONY: demo-down
demo-down: ## Stop everything `make demo` started
	scripts/demo-down.sh

.PHONY: demo-check
demo-check: ## Run the demo end to end and stop it (CI runs this so the demo cannot rot)
	trap 'scripts/demo-down.sh' EXIT; scripts/demo.sh

.PHONY: bench
bench: ## Fleet benchmark (issue 10): N = 1,000, 5,000, 10,000; results in bench/results/ (docs/performance.md)
	BENCH_MAKE_TARGET=bench scripts/bench.sh 1000 5000 10000

.PHONY: bench-accelerated
bench-accelerated: ## The fleet benchmark at N = 5,000 and 10,000 with 200 reads/s and 50 writes/s: the operator's own costs at size in under an hour
	BENCH_MAKE_TARGET=bench-accelerated BENCH_READ_QPS=$${BENCH_READ_QPS:-200} BENCH_WRITE_QPS=$${BENCH_WRITE_QPS:-50} scripts/bench.sh 5000 10000

.PHONY: bench-quick
bench-quick: ## The fleet benchmark at N = 100 (a few minutes; results in bench/results/)
	BENCH_MAKE_TARGET=bench-quick BENCH_REFRESH=$${BENCH_REFRESH:-30} BENCH_K=$${BENCH_K:-2} scripts/bench.sh 100

.PHONY: bench-ci
bench-ci: ## bench-quick on the debug build with results in a scratch dir; fails if the fleet does not converge or writes in steady state
	BENCH_PROFILE=debug BENCH_STRICT=1 BENCH_RESULTS="$$(mktemp -d)" $(MAKE) --no-print-directory bench-quick

.PHONY: chaos
chaos: ## Many fault schedules (CHAOS_SCHEDULES=50, CHAOS_RESTART_SCHEDULES=5, new seed or CHAOS_SEED); prints the totals
	@summary="$$(mktemp)"; seed="$${CHAOS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"; rc=0; \
	echo "chaos: base seed $$seed (rerun with CHAOS_SEED=$$seed)"; \
	CHAOS_SEED="$$seed" CHAOS_SCHEDULES="$${CHAOS_SCHEDULES:-50}" CHAOS_RESTART_SCHEDULES="$${CHAOS_RESTART_SCHEDULES:-5}" \
	  CHAOS_SUMMARY_FILE="$$summary" scripts/with-control-plane.sh \
	  $(CARGO) test --test it chaos:: -- --nocapture --test-threads=1 || rc=$$?; \
	awk 'function v(k,  s) { if (match($$0, "\"" k "\":[0-9]+")) { s = substr($$0, RSTART, RLENGTH); sub(/.*:/, "", s); return s + 0 } return 0 } \
	  { n += v("schedules"); f += v("faults"); r += v("faultedRequests"); o += v("objects"); x += v("violations"); t += v("seconds") } \
	  END { printf "chaos: %d schedules ran, %d faults injected (%d Azure requests shaped by faults), %d objects checked, %d violations, %d s\n", n, f, r, o, x, t }' "$$summary"; \
	rm -f "$$summary"; exit $$rc
