# cachekeeper — run `make help` for the targets.
GO        ?= go
BIN       ?= bin/cachekeeper
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/cachekeeper/cachekeeper/internal/cli.Version=$(VERSION)
STATICCHECK_VERSION ?= v0.8.2

.DEFAULT_GOAL := help
.PHONY: help build dev test test-python test-short test-faults lint bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/cachekeeper
	@echo "building $(BIN) ($(VERSION)); the first build compiles every dependency and can take a couple of minutes"
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cachekeeper

dev: build ## run worker + demo on embedded Redis and SQLite (no services needed); Ctrl-C stops
	./$(BIN) dev

test: ## go vet, then every test with the race detector (private redis-server, PostgreSQL schema per test, private PostgreSQL/MariaDB for the change stream)
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 8m $$($(GO) list ./... | grep -v /internal/faults)
	# examples/embedded: its own module, built against the public API only
	cd examples/embedded && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 2m ./...
	$(MAKE) test-python

# Debian's interpreter: it sees python3-redis, python3-pytest, python3-fastapi, python3-httpx and
# python3-psycopg2 (.ci/run installs them); a python3 earlier on PATH (pyenv, venv) may not.
PYTHON ?= /usr/bin/python3
PYTEST := PYTHONDONTWRITEBYTECODE=1 CACHEKEEPER_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -rs -p no:cacheprovider

test-python: build ## the Python package's tests and the FastAPI example's (private redis-server, real worker processes, PostgreSQL schema)
	cd clients/python && $(PYTEST) tests
	cd examples/fastapi && $(PYTEST) tests

test-faults: ## the fault suite: real worker processes killed with real signals, Redis Cluster/Sentinel failovers, database outages (docs/reliability.md); prints what it measured
	$(GO) test -race -count=1 -timeout 6m -v ./internal/faults/

test-short: ## tests without the race detector, quicker feedback
	$(GO) test -count=1 ./...

lint: ## go vet and staticcheck
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench: build ## every `cachekeeper bench` scenario on a private Redis, plus Go benchmarks
	./$(BIN) bench queue --tasks 20000
	./$(BIN) bench changes --rows 50000
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./internal/...

clean: ## remove build output
	rm -rf bin
