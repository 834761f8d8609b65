# dihya-realtime — the two commands a user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The benchmark's Node baseline and load generator, from benchmarks/node/package-lock.json.
BENCH_MODULES := benchmarks/node/node_modules/.package-lock.json

.PHONY: run test install install-test services browser web js-client lint docs bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# The JavaScript client (clients/js, docs/js-client.md): npm packages from its lockfile
# (socket.io-client; TypeScript as a devDependency), built by tsc into clients/js/dist/.
JS_CLIENT_MODULES := clients/js/node_modules/.package-lock.json
JS_CLIENT_DIST := clients/js/dist/index.js

$(JS_CLIENT_MODULES): clients/js/package.json clients/js/package-lock.json
	bash scripts/ensure_node.sh
	cd clients/js && npm ci --ignore-scripts --no-audit --no-fund

$(JS_CLIENT_DIST): $(JS_CLIENT_MODULES) clients/js/tsconfig.json $(wildcard clients/js/src/*.ts clients/js/src/generated/*.ts)
	cd clients/js && npm run --silent build

js-client: $(JS_CLIENT_DIST)

# The demo web client: npm packages from the lockfile, bundled by esbuild into the package's
# static/ folder. Make skips both steps when their outputs are newer than their inputs.
WEB_MODULES := web/node_modules/.package-lock.json
BUNDLE := src/dihya_realtime/static/app.js

$(WEB_MODULES): web/package.json web/package-lock.json
	bash scripts/ensure_node.sh
	cd web && npm ci --ignore-scripts --no-audit --no-fund

# the demo imports the JavaScript client's TypeScript sources (web/package.json: file: link)
$(BUNDLE): $(WEB_MODULES) $(wildcard web/src/*) $(wildcard clients/js/src/*.ts clients/js/src/generated/*.ts)
	cd web && npm run --silent build

web: $(BUNDLE)

install: $(STAMP) js-client web

run: install
	$(BIN)/dihya-realtime migrate --dev
	$(BIN)/dihya-realtime serve --dev

services:
	bash scripts/ensure_services.sh

browser:
	bash scripts/ensure_browser.sh

test: install services browser $(BENCH_MODULES)
	$(BIN)/ruff check src tests benchmarks examples setup.py
	$(BIN)/mypy src/dihya_realtime
	$(BIN)/lint-imports
	cd clients/js && npm run --silent typecheck
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25 tests

lint: install
	$(BIN)/ruff check src tests examples setup.py
	$(BIN)/mypy src/dihya_realtime
	$(BIN)/lint-imports

docs: install
	$(BIN)/dihya-realtime docs

# Benchmarks (benchmarks/README.md): Node baselines and generator from the lockfile, then all
# scenarios; BENCH_ARGS="--quick" for a smoke run.
$(BENCH_MODULES): benchmarks/node/package.json benchmarks/node/package-lock.json
	bash scripts/ensure_node.sh
	npm ci --prefix benchmarks/node --no-audit --no-fund

bench: install services $(BENCH_MODULES)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Fuzzing (benchmarks/fuzz/): a real server in production mode, every declared event, raw
# frames, binary packets and Yjs updates for FUZZ_SECONDS (default 60); exits non-zero on an
# unhandled server exception, an `internal` reply, a bystander disconnect or a dead server.
# FUZZ_ARGS="--redis" for Redis as broker; `python -m benchmarks.fuzz --help` for the rest.
fuzz: install
	$(BIN)/python -m benchmarks.fuzz $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info web/node_modules clients/js/node_modules clients/js/dist $(BUNDLE) $(BUNDLE).map src/dihya_realtime/static/app.css*
