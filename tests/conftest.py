"""Test harness: real PostgreSQL and MariaDB servers on loopback, and an isolated Airflow home.

Once per test session this starts a throwaway PostgreSQL (initdb from the installed server binaries) and a
throwaway MariaDB (``mariadb-install-db`` + ``mariadbd --no-defaults``) on free loopback ports, and stops
both at the end, also when tests fail.  With ``REFDATA_TEST_PG_DSN`` / ``REFDATA_TEST_MYSQL_DSN`` set (for
docker-compose users) those servers are used instead.  A server that cannot start makes every test that
needs it *fail* with the reason: database tests never skip.

Airflow is pointed at a temporary ``AIRFLOW_HOME`` with a SQLite metadata database before anything can
import it; tests that need the metadata database use the ``airflow_db`` fixture, which migrates it once.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# --- Airflow environment: must be set before anything imports airflow --------------------------------
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="refdata-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO_ROOT / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP"] = r"airflow_provider_refdata\..*"
os.environ.setdefault("REFDATA_CONFIG_DIR", str(REPO_ROOT / "config"))

from devtools.servers import MariaDbServer, PostgresServer, ServerStartError  # noqa: E402

# The Celery cluster test (tests/celery) starts Redis, an Airflow scheduler and two workers: `make test` (all of
# tests/) does not collect it — not a skip that could hide a broken install; `make test-celery` (which sets
# REFDATA_CELERY=1) or an explicit `pytest tests/celery` runs it.
collect_ignore = [] if os.environ.get("REFDATA_CELERY") == "1" else ["celery"]

# What the session's database tests ran against, reported at the end of the run.
_SERVERS_USED: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if _SERVERS_USED:
        terminalreporter.section("database servers used")
        for name, description in _SERVERS_USED.items():
            terminalreporter.write_line(f"{name}: {description}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


# --- servers ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def servers_root() -> Iterator[Path]:
    # Not under pytest's basetemp: every pytest session resets /tmp/pytest-of-<user> to 0700, which would
    # lock the PostgreSQL server (running as nobody) out of its data directory mid-run.
    root = Path(tempfile.mkdtemp(prefix="refdata-test-servers-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(servers_root: Path) -> Iterator[str]:
    """DSN of the session's PostgreSQL server (started here unless REFDATA_TEST_PG_DSN is set)."""
    external = os.environ.get("REFDATA_TEST_PG_DSN")
    if external:
        _SERVERS_USED["PostgreSQL"] = f"{_pg_version(external)} (external, REFDATA_TEST_PG_DSN)"
        yield external
        return
    # The zones of the users' servers: the sync must not depend on them (TIMESTAMP, watermarks, dates).
    server = PostgresServer(servers_root / "postgres", database="refdata_test", timezone="Asia/Shanghai")
    try:
        server.start()
    except (ServerStartError, OSError) as exc:
        server.stop()
        pytest.fail(f"could not start the test PostgreSQL server: {exc}", pytrace=False)
    _SERVERS_USED["PostgreSQL"] = f"{_pg_version(server.dsn)} on 127.0.0.1:{server.port} (started by the harness)"
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_server_handle(servers_root: Path) -> Iterator[MariaDbServer | None]:
    """The session's MariaDB server object (None when REFDATA_TEST_MYSQL_DSN points elsewhere)."""
    if os.environ.get("REFDATA_TEST_MYSQL_DSN"):
        yield None
        return
    server = MariaDbServer(servers_root / "mariadb", time_zone="+08:00")
    try:
        server.start()
    except (ServerStartError, OSError) as exc:
        server.stop()
        pytest.fail(f"could not start the test MariaDB server: {exc}", pytrace=False)
    _SERVERS_USED["MariaDB"] = f"{_mysql_version(server.dsn)} on 127.0.0.1:{server.port} (started by the harness)"
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mysql_server(mysql_server_handle: MariaDbServer | None) -> str:
    """DSN of the session's MariaDB/MySQL server."""
    if mysql_server_handle is None:
        dsn = os.environ["REFDATA_TEST_MYSQL_DSN"]
        _SERVERS_USED["MySQL"] = f"{_mysql_version(dsn)} (external, REFDATA_TEST_MYSQL_DSN)"
        return dsn
    return mysql_server_handle.dsn


def _pg_version(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0]


def _mysql_version(dsn: str) -> str:
    conn = mysql_connect(dsn)
    try:
        cur = conn.cursor()
        cur.execute("SELECT VERSION()")
        return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def pg_dsn(pg_server: str) -> str:
    return pg_server


@pytest.fixture
def pg_conn(pg_server: str) -> Iterator:
    """A plain psycopg connection to the test warehouse (not autocommit)."""
    import psycopg

    conn = psycopg.connect(pg_server)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def pg_schema(pg_server: str) -> Iterator[str]:
    """A fresh, uniquely named schema (Chinese-friendly tests put their tables here); dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def mysql_connect(dsn: str, database: str | None = None):
    """A MySQLdb connection from a ``mysql://user:pw@host:port/db`` DSN."""
    import MySQLdb

    parts = urlsplit(dsn)
    return MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=database or parts.path.lstrip("/") or "",
        charset="utf8mb4",
        autocommit=True,
    )


@pytest.fixture
def mysql_db(mysql_server: str) -> Iterator[str]:
    """A fresh, uniquely named MySQL database; yields its name and drops it afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    conn = mysql_connect(mysql_server)
    try:
        conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        conn.close()
    yield name
    conn = mysql_connect(mysql_server)
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


# --- Airflow ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the temporary Airflow metadata database once per session; returns AIRFLOW_HOME."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stderr[-3000:]}", pytrace=False)
    return _AIRFLOW_HOME


def airflow_conn_uri(dsn: str, conn_type: str) -> str:
    """Turn a ``postgresql://`` / ``mysql://`` DSN into an Airflow connection URI of ``conn_type``."""
    parts = urlsplit(dsn)
    return parts._replace(scheme=conn_type).geturl()


def run_cli(*args: str, env_vars: dict[str, str], drop: tuple[str, ...] = ("REFDATA_",)) -> subprocess.CompletedProcess:
    """Run ``python -m airflow_provider_refdata *args`` in a fresh process from the repository root.

    :param args: the command line after the module.
    :param env_vars: the environment variables to set, over this process's environment.
    :param drop: prefixes of this process's variables left out first (the test's own settings must not leak in).
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith(drop)} | env_vars
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_refdata", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env=environ,
        timeout=120,
    )


@pytest.fixture
def airflow_connections(pg_server: str, mysql_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Define the provider's default connections (warehouse, legacy MySQL) through AIRFLOW_CONN_*."""
    conns = {
        "refdata_warehouse": airflow_conn_uri(pg_server, "postgres"),
        "refdata_legacy_mysql": airflow_conn_uri(mysql_server, "mysql"),
    }
    for conn_id, uri in conns.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)
    return conns
