# airflow-provider-refdata — developer commands.  Everything installs what it needs itself.
#   make test    system packages (apt) + .venv (uv, from the lock) + ruff + pytest against real servers
#   make lint    ruff
#   make bench   the benchmarks (writes nothing but their own output)
#   make test-celery  the provider on Airflow's CeleryExecutor: Redis, scheduler, two Celery workers (not in `make test`)
#   make lock    re-resolve requirements/lock.txt after changing pyproject.toml

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
UV := $(PYTHON) -m uv
LOCK := requirements/lock.txt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: test lint bench deps venv uv lock demo demo-down airflow clean
.PHONY: test-celery deps-celery

test: deps venv lint
	$(VPY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

# System packages: a PostgreSQL server, a MariaDB server and the MySQL client headers (mysqlclient
# builds from source).  Skipped when everything is already there.
deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing="$$missing mariadb-server"; \
	pkg-config --exists mysqlclient 2>/dev/null || pkg-config --exists libmariadb 2>/dev/null || missing="$$missing default-libmysqlclient-dev"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	dpkg -s fonts-wqy-zenhei >/dev/null 2>&1 || missing="$$missing fonts-wqy-zenhei"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			$$missing pkg-config build-essential >/dev/null; \
	else echo "system packages: present"; fi

# Redis, the Celery broker of `make test-celery`.  Skipped when redis-server is already there.
deps-celery:
	@if command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ]; then echo "redis-server: present"; \
	else \
		echo "installing system packages: redis-server"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	fi

# The sync DAG and three concurrent domain DAGs on a CeleryExecutor cluster under .test-celery/ (Redis,
# PostgreSQL, MariaDB, scheduler, dag-processor, API server, two workers); the log names the worker of
# every task.  See tests/celery/test_celery_cluster.py and devtools/celery_cluster.py.
test-celery: deps deps-celery venv
	REFDATA_CELERY=1 $(VPY) -m pytest tests/celery -v -s

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv

venv: $(VENV)/.installed

$(VENV)/.installed: $(LOCK) pyproject.toml | uv
	@[ -x $(VPY) ] || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --python $(VPY) -r $(LOCK)
	$(UV) pip install --quiet --python $(VPY) --no-deps -e .
	@touch $@

lock: | uv
	$(UV) pip compile --quiet pyproject.toml --extra test --python-version 3.11 -o $(LOCK)

bench: deps venv
	$(VPY) -m benchmarks

# The whole product end to end on local servers under .demo/ (no Docker): sample data, both DAGs through
# `airflow dags test`, a report.  Run it again to see the incremental sync.  See devtools/demo.py.
demo: deps venv
	$(VPY) -m devtools.demo

# Stop the demo's database servers (the data under .demo/ stays; `rm -rf .demo` starts from scratch).
demo-down:
	@if [ -x $(VPY) ]; then $(VPY) -m devtools.demo down; else echo "no $(VENV): no demo servers to stop"; fi

# airflow standalone with the provider and the example DAGs against the demo servers; Ctrl-C stops it.
airflow: deps venv
	$(VPY) -m devtools.airflow_standalone

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
