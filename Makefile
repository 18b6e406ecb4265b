# Set-up and the two entry points: `make sample` runs the job on the bundled
# sample data, `make test` runs lint and the test suite. Both install what
# they need on a fresh machine (Python venv, pip packages, Node's Azurite).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE_OUT ?= out/sample

export AWS_EC2_METADATA_DISABLED := true
export NO_GCE_CHECK := true

.PHONY: sample test lint install install-dev clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/activate
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements.txt $(BIN)/activate
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(VENV)/.installed $@

node_tools/node_modules/.bin/azurite-blob: node_tools/package.json
	cd node_tools && npm install --silent --no-audit --no-fund

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev node_tools/node_modules/.bin/azurite-blob

sample: install
	rm -rf $(SAMPLE_OUT)
	$(BIN)/python -m pipeline --input 'sample_data/corpus/*' \
	  --input 'sample_data/synthetic/**' --output $(SAMPLE_OUT)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf out .pytest_cache .hypothesis
