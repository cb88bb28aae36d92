# Two commands do all set-up: `make run` and `make test`.  Both create the
# virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run worker test coverage lint clean-venv

$(BIN)/zope-testrunner: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,relstorage]'
	touch $@

run: $(BIN)/zope-testrunner
	$(BIN)/remotetask serve --host $(HOST) --port $(PORT)

worker: $(BIN)/zope-testrunner
	$(BIN)/remotetask worker

test: $(BIN)/zope-testrunner
	$(BIN)/zope-testrunner --test-path=src -vc --all $(TESTARGS)

coverage: $(BIN)/zope-testrunner
	$(BIN)/coverage run -m zope.testrunner --test-path=src --all
	$(BIN)/coverage report

clean-venv:
	rm -rf $(VENV)
