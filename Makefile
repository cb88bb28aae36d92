# Two commands do all set-up: `make run` and `make test`.  Both create the
# virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run worker test bench coverage lint clean-venv chromium

$(BIN)/zope-testrunner: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,relstorage]'
	touch $@

# exec: the server replaces the shell, so that a signal to the process
# group reaches it once, not through the shell too.
run: $(BIN)/zope-testrunner
	exec $(BIN)/remotetask serve --host $(HOST) --port $(PORT)

worker: $(BIN)/zope-testrunner
	exec $(BIN)/remotetask worker $(WORKERARGS)

# The real-browser tests drive Debian's chromium: install it when it is
# missing and we may (root); otherwise those tests skip and say why.
chromium:
	@which chromium >/dev/null 2>&1 || { [ "$$(id -u)" != 0 ] || \
	    { apt-get update -q && apt-get install -y -q chromium; } || \
	    echo 'chromium could not be installed: browser tests skip'; }

test: $(BIN)/zope-testrunner chromium
	$(BIN)/zope-testrunner --test-path=src -vc --all $(TESTARGS)

# The benchmarks of issue 7: this package and its peers (Huey, Celery,
# RQ) in one run; not part of `make test`.  BENCH_QUICK=1 for a short
# try, BENCH_N for the number of jobs (see docs/benchmarks.rst).
$(VENV)/.bench-installed: setup.py $(BIN)/zope-testrunner
	$(BIN)/pip install -q -e '.[test,relstorage,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python benchmarks/run.py $(BENCHARGS)

# Subprocesses (servers, workers) report too: COVERAGE_PROCESS_START makes
# them start coverage, and `combine` gathers their data files.
coverage: $(BIN)/zope-testrunner
	COVERAGE_FILE=$(CURDIR)/.coverage \
	COVERAGE_PROCESS_START=$(CURDIR)/setup.cfg \
	  $(BIN)/coverage run -m zope.testrunner --test-path=src --all
	$(BIN)/coverage combine
	$(BIN)/coverage report

clean-venv:
	rm -rf $(VENV)
