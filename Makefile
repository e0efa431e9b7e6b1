# media_tool (PostgreSQL) -> bravo-1 (MongoDB). Each stage is a file target, so only stale
# stages rerun; stages without a file output leave a stamp under .make/. `make help` lists
# the targets. Settings: pipeline.env < pipeline.local.env < environment < make variables.

.DELETE_ON_ERROR:
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --no-print-directory

PYTHON ?= python3
VENV := .venv
ETL := $(VENV)/bin/etl
PYTEST := $(VENV)/bin/pytest
BOOT := $(VENV)/.installed

# A setting as the pipeline sees it, without starting Python: the environment first, then
# pipeline.local.env, then pipeline.env.
setting = $(or $($(1)),$(shell sed -n 's/^$(1)=//p' pipeline.env $(wildcard pipeline.local.env) | tail -n 1))

# A make variable as one shell word: its raw text (make functions in it are not run), single-
# quoted, with any ' inside closed, escaped and reopened.
shell-quote = '$(subst ','\'',$(value $(1)))'

# Make variables (DB=…, SOURCE=…) win over everything and are passed on as flags/settings.
DB ?= $(call setting,MONGO_DB_NAME)
SOURCE ?= $(call setting,ETL_SOURCE)
export MONGO_DB_NAME := $(DB)
export ETL_SOURCE := $(SOURCE)
ifdef KEY
ACQUIRE_FLAGS := --key $(KEY)
endif
ifdef DUMP
export ETL_DUMP_FILE := $(abspath $(DUMP))
endif
# Collections the anomaly guard may load although they shrank: ACCEPT_SHRINK=daily_metrics,…
ACCEPT_FLAGS := $(if $(ACCEPT_SHRINK),--accept-shrink $(call shell-quote,ACCEPT_SHRINK))

# The files that link the stages (see docs/architecture.md).
DUMP_POINTER := data/dumps/current.json
RESTORED := data/restored.json
SNAPSHOT := schemas/snapshots/current.json
CHANGES := data/changes/latest.json
DECIDED := data/changes/decided.json
DECISIONS := schemas/decisions.yaml
RULES := schemas/rules.yaml
MAPPING := schemas/mapping.json
CANONICAL := schemas/collections/index.json
GENERATED := generated/.canonical-hash
STAMPS := .make/$(DB)
MONGO_SCHEMA := $(STAMPS)/mongo-schema.stamp
TRANSFORMED := data/transformed/$(DB)/manifest.json
LOADED := $(STAMPS)/load.stamp
VALIDATED := $(STAMPS)/validate.stamp
CONTRACT := $(STAMPS)/contract.stamp
PUSHED := $(STAMPS)/push.stamp
GUARDED := $(STAMPS)/guard.stamp

# With --source local there is no dump to tell us the database changed: always re-snapshot
# (cheap: catalog queries; the snapshot file changes only when the schema does).
SNAPSHOT_FORCE := $(if $(filter local,$(SOURCE)),FORCE)

## ---- the pipeline -------------------------------------------------------------------

all: $(BOOT) ## Run the whole pipeline (only stale stages work); INTERACTIVE=1, DB=…, SOURCE=…
	@$(ETL) run $(if $(INTERACTIVE),--interactive) $(if $(YES_SAFE),--yes-safe) $(if $(AUTO_LATEST),--auto-latest) \
	    $(if $(DECISIONS_FILE),--decisions $(DECISIONS_FILE)) $(ACCEPT_FLAGS)

plan: $(BOOT) ## What `make all` would do now, without doing it (JSON=1 for scripts; ACCEPT_SHRINK=…)
	@$(ETL) plan $(if $(JSON),--json) $(if $(KEY),--key $(call shell-quote,KEY)) $(if $(LOAD_MODE),--mode $(call shell-quote,LOAD_MODE)) \
	    $(if $(filter yes,$(FULL_REFRESH)),--full-refresh) $(if $(DECISIONS_FILE),--decisions $(call shell-quote,DECISIONS_FILE)) $(ACCEPT_FLAGS)

demo: $(BOOT) node-deps mongo-deps ## The whole pipeline on local services and the sample dump
	@$(ETL) services up
	@$(ETL) sample --upload
	@$(MAKE) all

pipeline: $(PUSHED) $(CONTRACT) $(GENERATED) ## (internal) the stage graph that `make all` runs

acquire: $(DUMP_POINTER) ## Fetch the newest dump (SOURCE=s3|direct|file|local, KEY=…, DUMP=path)
restore: $(RESTORED) ## Restore the current dump into LOCAL_PG_DB
snapshot: $(SNAPSHOT) ## Snapshot the restored database's schema
decide: $(DECIDED) ## Apply safe changes and recorded decisions (exit 3 if any are missing)
canonical: $(CANONICAL) ## Canonical per-collection schemas and the mapping
generate: $(GENERATED) ## JSON Schema, OpenAPI, TypeScript, Zod and Pydantic artifacts
mongo-schema: $(MONGO_SCHEMA) ## MongoDB validators and indexes
transform: $(TRANSFORMED) ## PostgreSQL rows -> documents (mongodump layout)
guard: $(GUARDED) ## Stop when a collection of the new dump shrank or emptied (exit 5; ACCEPT_SHRINK=…)
load: $(LOADED) ## Back up, then load the transformed data into MongoDB
validate: $(VALIDATED) ## Check counts, schemas, checksums and references
test-data: $(CONTRACT) ## Run the generated contract tests against the loaded database
push: $(PUSHED) ## Upload the export to S3

# The dump source is outside Make's sight, so acquisition always asks; current.json is
# rewritten only when a different dump arrives.
$(DUMP_POINTER): $(BOOT) FORCE
	@$(ETL) acquire $(ACQUIRE_FLAGS)

$(RESTORED): $(DUMP_POINTER)
	@$(ETL) restore

$(SNAPSHOT): $(RESTORED) $(SNAPSHOT_FORCE)
	@$(ETL) snapshot

$(CHANGES): $(SNAPSHOT) $(wildcard schemas/accepted.json)
	@$(ETL) detect

$(DECIDED): $(CHANGES) $(wildcard $(DECISIONS))
	@$(ETL) decide $(if $(INTERACTIVE),--interactive,--yes-safe) $(if $(DECISIONS_FILE),--decisions $(DECISIONS_FILE))

# canonical rewrites nothing that did not change, so its outputs keep old mtimes; the stamp
# records that it ran, so an unchanged night does not rerun it.
.make/canonical.stamp: $(DECIDED) $(wildcard $(RULES))
	@$(ETL) canonical
	@mkdir -p $(@D) && touch $@

$(CANONICAL) $(MAPPING): .make/canonical.stamp ;

$(GENERATED): $(CANONICAL) package-lock.json | node-deps
	@$(ETL) generate

$(MONGO_SCHEMA): $(CANONICAL)
	@$(ETL) mongo-schema
	@mkdir -p $(@D) && touch $@

# The manifest is rewritten only when its content changes; the stamp records that the
# transform ran, so an unchanged night does not rerun it.
$(STAMPS)/transform.stamp: $(MAPPING) $(RESTORED) $(DECIDED)
	@$(ETL) transform --db $(DB)
	@mkdir -p $(@D) && touch $@

$(TRANSFORMED): $(STAMPS)/transform.stamp ;

# The anomaly guard reads MongoDB and writes nothing there. make builds prerequisites left to
# right, so it runs before mongo-schema and the load touch MongoDB; a stop (exit 5) leaves no
# stamp, so the next run checks again.
$(GUARDED): $(TRANSFORMED)
	@$(ETL) guard --db $(DB) $(ACCEPT_FLAGS)
	@mkdir -p $(@D) && touch $@

$(LOADED): $(TRANSFORMED) $(GUARDED) $(MONGO_SCHEMA)
	@$(ETL) load --db $(DB) $(if $(LOAD_MODE),--mode $(LOAD_MODE)) $(if $(filter yes,$(PRUNE)),--prune --yes) \
	    $(if $(filter yes,$(FULL_REFRESH)),--drop-database --yes)
	@mkdir -p $(@D) && touch $@

$(VALIDATED): $(LOADED)
	@$(ETL) validate --after-load
	@mkdir -p $(@D) && touch $@

$(CONTRACT): $(LOADED) $(GENERATED)
	@$(ETL) test-data
	@mkdir -p $(@D) && touch $@

$(PUSHED): $(VALIDATED)
	@$(ETL) push
	@mkdir -p $(@D) && touch $@

detect: $(BOOT) ## Snapshot now and report schema changes (EXIT_CODE=1: exit 2 when any; JSON=1)
	@$(MAKE) $(RESTORED)
	@$(ETL) snapshot
	@$(ETL) detect $(if $(EXIT_CODE),--exit-code) $(if $(JSON),--json)

sample: $(BOOT) ## Build the sample dump and put it in the local S3 (SEED=…, METRICS_ROWS=…, FORCE=1)
	@$(ETL) sample $(if $(SEED),--seed $(SEED)) $(if $(METRICS_ROWS),--metrics-rows $(METRICS_ROWS)) $(if $(FORCE),--force) --upload

sample-changed: $(BOOT) ## Upload the sample after a schema release; the next `make all` detects it
	@$(ETL) sample --variant changed --upload

## ---- operations -----------------------------------------------------------------------

init: $(BOOT) ## Start over for the database LOCAL_PG_*/SOURCE point at: no accepted schema, empty rules and decisions (YES=1: no question)
	@$(ETL) init $(if $(filter 1 yes true,$(YES)),--yes)

backup: $(BOOT) ## Back up DB's collections now (backups/<db>/<version>/)
	@$(ETL) backup --db $(DB)

list-versions: $(BOOT) ## List backup versions (DB=…)
	@$(ETL) list-versions --db $(DB)

rollback: $(BOOT) ## Restore a backup: make rollback VERSION=2025-06-28-001 [DB=…]
	@test -n "$(VERSION)" || { echo "usage: make rollback VERSION=YYYY-MM-DD-NNN [DB=…]" >&2; exit 1; }
	@$(ETL) rollback --version '$(VERSION)' --db $(DB) --yes

migrate: $(BOOT) ## Apply pending migration scripts (data/migrations) to DB; BACKUP_VERSION=… records the backup
	@$(ETL) migrate --db $(DB) $(if $(BACKUP_VERSION),--backup-version $(BACKUP_VERSION))

status: $(BOOT) ## Collections, counts, accepted schema, last run, latest backup
	@$(ETL) status --db $(DB)

compare: $(BOOT) ## Two databases side by side: make compare A=bravo-1 B=bravo-1-20261126
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=db1 B=db2" >&2; exit 1; }
	@$(ETL) compare '$(A)' '$(B)'

config: $(BOOT) ## Show the effective settings and where each came from
	@$(ETL) config

services-up: $(BOOT) mongo-deps ## Start the local PostgreSQL cluster, S3 server and MongoDB server
	@$(ETL) services up

services-down: $(BOOT) ## Stop them (data folders stay)
	@$(ETL) services down

services-status: $(BOOT) ## What runs where
	@$(ETL) services status

## ---- development --------------------------------------------------------------------

test: $(BOOT) node-deps mongo-deps ## Run the test suite (starts its own PostgreSQL, S3 and MongoDB servers)
	@$(PYTEST) $(PYTEST_ARGS)

bench: $(BOOT) mongo-deps ## Benchmarks; results in bench/*.json, summarised in the README
	@$(VENV)/bin/python bench/bench_snapshot.py
	@$(VENV)/bin/python bench/bench_transform_load.py
	@$(VENV)/bin/python bench/bench_mongo.py

$(BOOT): pyproject.toml setup.py scripts/etl/stages/transform/_pgbson.c scripts/etl/model/_bsoncanon.c
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@echo "installing Python dependencies into $(VENV) …"
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 \
	    | { grep -v "^WARNING: Location .* is ignored" || true; }
	@touch $@

node-deps: node_modules/.installed
node_modules/.installed: package.json $(wildcard package-lock.json)
	@command -v npm >/dev/null || { echo "npm not found: install Node 20 to generate TypeScript/Zod artifacts" >&2; exit 1; }
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The managed MongoDB server in its own virtualenv (a separate program; see README).
mongo-deps: .venv-mongo/.installed
.venv-mongo/.installed: scripts/setup-mongo-venv.sh scripts/mongo-server-requirements.txt
	@PYTHON=$(PYTHON) bash scripts/setup-mongo-venv.sh
	@touch $@

clean: ## Remove data/, .make/ and logs (backups/ and schemas/ stay)
	rm -rf data .make logs reports

help: ## This list
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-zA-Z_-]*:.*## / {printf "  %-16s %s\n", $$1, $$2} /^## ----/ {sub(/^## -+ */, ""); sub(/ -+$$/, ""); printf "\n%s\n", $$0}' $(MAKEFILE_LIST)

FORCE:
.PHONY: all demo pipeline plan acquire restore snapshot decide canonical generate mongo-schema transform \
	guard load validate test-data push detect init backup list-versions rollback migrate status compare config services-up \
	services-down services-status sample sample-changed test bench node-deps mongo-deps clean help FORCE
