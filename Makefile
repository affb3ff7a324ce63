# The two commands of the quick start: `make demo` and `make test`. Both set the machine up first.
SHELL := /bin/bash
NODE_TEST := node --test --test-concurrency=2 --test-reporter=spec

.PHONY: setup test-setup build demo test test-unit lint typecheck bench clean

setup:
	@bash scripts/setup.sh

build: setup

# The study on the synthetic world (configs/demo.yaml); resumes if interrupted.
demo: setup
	@node packages/mindseye/dist/cli/main.js experiment --config configs/demo.yaml

typecheck: setup
	npx tsc -b packages/torch packages/mindseye bench

lint: setup
	npx eslint packages bench

# Test files are compiled next to their sources (dist/**/*.test.js). Two processes at most, each
# with one intra-op thread (MINDSEYE_NUM_THREADS), so the suite does not oversubscribe 2 cores.
# The tests also need Debian's chromium (experiment/report_html.test.ts opens a report headless) and
# python3-torch for its torchrun (cli/launch.test.ts starts ranks with it, as users do).
test-setup:
	@MINDSEYE_WITH_CHROMIUM=1 MINDSEYE_WITH_PYTORCH=1 bash scripts/setup.sh

test: test-setup typecheck lint
	@shopt -s globstar; MINDSEYE_NUM_THREADS=1 MINDSEYE_BLAS_THREADS=1 $(NODE_TEST) packages/*/dist/**/*.test.js

bench:
	@MINDSEYE_WITH_PYTORCH=1 bash scripts/setup.sh
	npm run bench:engine

clean:
	rm -rf packages/*/dist packages/*/*.tsbuildinfo packages/torch/native/build
