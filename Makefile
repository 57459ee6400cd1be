# Build, lint and test cleave. `make test` is the full suite: it starts the local services
# (installing MariaDB, kcat and the Kafka jars on a fresh machine), then vets and runs every
# package's tests with the race detector against them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go
SERVICES := scripts/services.sh
TEST_TIMEOUT ?= 25m
PKGS ?= ./...

.PHONY: all build demo test test-tools unit vet fmt fmt-check services-up services-down services-status rules-test

all: build

build:
	$(GO) build -o bin/cleave ./cmd/cleave

# The demo: services, a ~100k-row shop split onto two shards under a write load, a clean
# reconcile, three injected drifts caught and repaired. See scripts/demo.sh.
demo:
	scripts/demo.sh

# The full suite. Services first: tests in CI fail rather than skip when one is missing.
test: services-up test-tools
	eval "$$($(SERVICES) env)"; \
	$(GO) vet $(PKGS); \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	$(MAKE) --no-print-directory rules-test

# Programs the tests run besides the services: Prometheus and promtool (rule tests, the
# monitoring end-to-end test) and Alertmanager, from Debian's packages when missing.
test-tools:
	scripts/lib/ensure.sh prometheus alertmanager

# Tests that need no services (integration tests skip themselves under -short).
unit:
	$(GO) test -short -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go'; git ls-files --others --exclude-standard '*.go')

# Fails listing the files gofmt would change.
fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go'; git ls-files --others --exclude-standard '*.go')); \
	if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Prometheus alert rule unit tests (configs/prometheus/*_test.yml), run by promtool from
# Debian's prometheus package; nothing to do until such tests exist.
rules-test:
	@shopt -s nullglob; tests=(configs/prometheus/*_test.yml configs/prometheus/*_test.yaml); \
	if (( $${#tests[@]} == 0 )); then echo "rules-test: no configs/prometheus/*_test.yml yet"; exit 0; fi; \
	scripts/lib/ensure.sh promtool; \
	promtool test rules "$${tests[@]}"

services-up:
	$(SERVICES) up

services-down:
	$(SERVICES) down

services-status:
	$(SERVICES) status
