# Messaging service: build, run, test and operate. `make` (or `make help`) lists the targets.
#
# Variables (override on the command line or in the environment):
#   PORT     API port                                  (default 8080)
#   PROFILE  cargo profile of the binary that is run   (default release; tests use debug)
#   API_URL  service checked by test-flow              (default http://localhost:$(PORT))
#   ARGS     extra arguments for bench
#   FORCE=1  skip the db-reset confirmation

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PORT ?= 8080
PROFILE ?= release
API_URL ?= http://localhost:$(PORT)
ARGS ?=
FORCE ?=

BIN := target/$(PROFILE)/messaging-service
CARGO_PROFILE_FLAGS := $(if $(filter release,$(PROFILE)),--release,$(if $(filter debug dev,$(PROFILE)),,--profile $(PROFILE)))
# What the scripts in bin/ need to know.
RUN_ENV := PORT=$(PORT) PROFILE=$(PROFILE)

.PHONY: help build services run run-bg worker dev stop status logs restart-app migrate \
        db-reset test test-contract test-flow test-prometheus test-rate-limit bench fmt lint docker-up docker-down docker-logs

help: ## List the targets
	@echo "Usage: make <target> [PORT=8080] [PROFILE=release] [API_URL=...] [ARGS=...] [FORCE=1]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build the binary (cargo build --release, or PROFILE)
	cargo build $(CARGO_PROFILE_FLAGS)

services: ## Make sure PostgreSQL and Redis run and the role and database exist
	scripts/services.sh

run: build ## Run the API in the foreground (output also appended to logs/app.log)
	@$(RUN_ENV) SKIP_BUILD=1 bin/start.sh serve

run-bg: build ## Run the API in the background (PID in run/app.pid, log logs/app.log)
	@$(RUN_ENV) SKIP_BUILD=1 bin/start.sh --bg serve

worker: build ## Run the worker in the foreground (`make worker &` for background; logs/worker.log)
	@$(RUN_ENV) SKIP_BUILD=1 bin/start.sh worker

dev: ## Build, then run API and worker in one process (SQLite under ./data, in-process queue; nothing else needed)
	@$(RUN_ENV) bin/start.sh all

stop: ## Stop the API and the worker (by their PID files only)
	@$(RUN_ENV) bin/stop.sh

status: ## Show PIDs, whether they are alive, what listens on PORT, /live and /dependencies
	@$(RUN_ENV) bin/status.sh

logs: ## Follow logs/app.log and logs/worker.log
	@mkdir -p logs && touch logs/app.log logs/worker.log
	tail -F logs/app.log logs/worker.log

restart-app: build ## Restart the API only (stop by its PID, then run-bg)
	@$(RUN_ENV) bin/stop.sh api
	@$(MAKE) --no-print-directory run-bg

migrate: build ## Apply database migrations (DATABASE_URL)
	$(BIN) migrate

db-reset: build ## Drop every table and re-run migrations (asks first unless FORCE=1)
	@if [ "$(FORCE)" != 1 ]; then \
	  db=$${DATABASE_URL:-$$(sed -n 's/^DATABASE_URL=//p' .env 2>/dev/null | tail -n 1)}; \
	  db=$${db:-postgres://messaging_user:***@localhost:5432/messaging_service}; \
	  echo "This deletes ALL data in $$(echo "$$db" | sed -E 's#(://[^:/@]*:)[^@]*@#\1***@#')."; \
	  read -r -p "Type 'yes' to continue: " answer || true; \
	  if [ "$${answer:-}" != yes ]; then echo "Aborted (use FORCE=1 to skip this question)."; exit 1; fi; \
	fi
	$(BIN) db-reset

test: ## Run all tests: format and clippy checks, services, cargo test --all-targets, the HTTP suite again embedded, the flow, Prometheus, docs and API contract checks
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	scripts/services.sh
	cargo test --all-targets
	TEST_BACKEND=embedded cargo test --test api
	scripts/test-flow.sh --start
	scripts/test-prometheus.sh
	scripts/check-docs.sh
	scripts/test-contract.sh
	scripts/test-browser.sh

test-contract: ## Validate /openapi.json and run schemathesis over every operation (scratch service, both backends)
	scripts/test-contract.sh

test-flow: ## Check send -> queue -> worker -> sent against a running service at API_URL
	API_URL=$(API_URL) scripts/test-flow.sh

test-prometheus: ## Check deploy/ (promtool, rule tests) and scrape a scratch API + worker with a real Prometheus
	scripts/test-prometheus.sh
	scripts/test-browser.sh

test-rate-limit: ## The guide's rate-limit check (110 x /health) on a private instance (scratch database)
	scripts/services.sh
	python3 tests/integration/test_rate_limiting.py --start

bench: ## Benchmark on scratch databases and print one table (ARGS="--phases accept,drain --duration 5"; scripts/bench.sh --help)
	@if [ -x scripts/bench.sh ]; then scripts/bench.sh $(ARGS); else bash scripts/bench.sh $(ARGS); fi

fmt: ## Format the code (cargo fmt)
	cargo fmt --all

lint: ## cargo fmt --check and cargo clippy --all-targets -- -D warnings
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

docker-up: ## docker compose up -d: postgres, redis, app (behind nginx on :8080), worker, prometheus (:9090), grafana (:3000)
	docker compose up -d

docker-down: ## docker compose down (volumes are kept; `docker compose down -v` deletes the data)
	docker compose down

docker-logs: ## docker compose logs -f app worker
	docker compose logs -f app worker
