"""SourceResolver: which source reads each sync table (order, DSNs, memoisation, errors); no server needed."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_refdata.config import ReferenceSyncConfig
from airflow_provider_refdata.exceptions import RefdataConfigError, RefdataSourceError
from airflow_provider_refdata.services.source_resolver import SourceResolver, source_from_dsn
from airflow_provider_refdata.services.source_sql import SqlSource
from airflow_provider_refdata.services.sources import MySqlSource, YamlFileSource

COLUMNS = [{"source": "code", "target": "代码"}]


def _table(name: str, source_type: str, **source_config: Any) -> Any:
    if source_type == "config_file":
        config = {"file_path": "/x/lines.yml", "schema_version": "1.0", **source_config}
    else:
        config = {"table": name, "columns": COLUMNS, **source_config}
    entry = {
        "name": name,
        "target_table": name,
        "primary_key": "代码",
        "source_type": source_type,
        "source_config": config,
    }
    return ReferenceSyncConfig.model_validate({"tables": [entry]}).tables[0]


class Named:
    """A stand-in source object (the resolver only hands sources out; nothing is read here)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def stream(self, table_config, since, batch_size):  # pragma: no cover - never read
        raise AssertionError("not read in these tests")

    def __repr__(self) -> str:
        return f"Named({self.label})"


class Factory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, source_type: str, conn_id: str | None) -> Named:
        self.calls.append((source_type, conn_id))
        return Named(f"factory:{source_type}:{conn_id}")


MYSQL_ENV = {"P_HOST": "db.example", "P_PORT": "3307", "P_USER": "u", "P_PASSWORD": "pw-secret", "P_DATABASE": "d"}


def test_connection_env_prefix_comes_first():
    table = _table("a", "legacy_mysql", connection_env_prefix="P")
    resolver = SourceResolver({"legacy_mysql": Named("by type")}, connection_factory=Factory(), environ=MYSQL_ENV)
    source = resolver.for_table(table)
    assert isinstance(source, MySqlSource)
    assert (source.host, source.port, source.user, source.password, source.database) == (
        "db.example",
        3307,
        "u",
        "pw-secret",
        "d",
    )


def test_connection_env_prefix_of_a_postgres_table():
    from airflow_provider_refdata.services.source_postgres import PostgresSource

    env = {k: v for k, v in MYSQL_ENV.items() if k != "P_PORT"}
    source = SourceResolver(environ=env).for_table(_table("a", "postgres", connection_env_prefix="P"))
    assert isinstance(source, PostgresSource) and (source.host, source.port, source.database) == (
        "db.example",
        5432,
        "d",
    )


def test_conn_id_key_then_source_type_key_then_factory():
    by_conn, by_type = Named("by conn_id"), Named("by type")
    factory = Factory()
    resolver = SourceResolver({"crm": by_conn, "legacy_mysql": by_type}, connection_factory=factory)
    assert resolver.for_table(_table("a", "legacy_mysql", conn_id="crm")) is by_conn
    assert resolver.for_table(_table("b", "legacy_mysql", conn_id="other")) is by_type
    assert resolver.for_table(_table("c", "legacy_mysql")) is by_type
    assert factory.calls == []
    # a source type nobody named: the factory, with the table's conn_id or the type's default connection
    assert resolver.for_table(_table("d", "postgres", conn_id="erp")).label == "factory:postgres:erp"
    assert resolver.for_table(_table("e", "postgres")).label == "factory:postgres:refdata_legacy_postgres"
    assert resolver.for_table(_table("f", "sql", conn_id="files")).label == "factory:sql:files"
    assert resolver.for_table(_table("g", "sql")).label == "factory:sql:None"
    assert factory.calls == [
        ("postgres", "erp"),
        ("postgres", "refdata_legacy_postgres"),
        ("sql", "files"),
        ("sql", None),
    ]


def test_config_file_tables_read_their_files_unless_a_source_is_given():
    factory = Factory()
    assert isinstance(SourceResolver(connection_factory=factory).for_table(_table("a", "config_file")), YamlFileSource)
    given = Named("yaml hook")
    assert SourceResolver({"config_file": given}).for_table(_table("a", "config_file")) is given
    assert factory.calls == []


def test_sources_are_built_once_per_connection():
    factory = Factory()
    resolver = SourceResolver({"files": "sqlite:////data/legacy.db"}, connection_factory=factory)
    one, two = (resolver.for_table(_table(n, "sql", conn_id="files")) for n in ("a", "b"))
    assert isinstance(one, SqlSource) and one is two and one.name == "SQLite /data/legacy.db"
    three, four = (resolver.for_table(_table(n, "legacy_mysql", conn_id="crm")) for n in ("c", "d"))
    assert three is four and factory.calls == [("legacy_mysql", "crm")]
    env = {**MYSQL_ENV}
    resolver = SourceResolver(environ=env)
    first = resolver.for_table(_table("e", "legacy_mysql", connection_env_prefix="P"))
    assert resolver.for_table(_table("f", "legacy_mysql", connection_env_prefix="P")) is first


def test_dsn_values_pick_the_source_by_scheme():
    from airflow_provider_refdata.services.source_postgres import PostgresSource

    assert isinstance(source_from_dsn("mysql://u:p@h:3306/db"), MySqlSource)
    assert isinstance(source_from_dsn("postgresql://u:p@h:5432/db"), PostgresSource)
    assert isinstance(source_from_dsn("sqlite:////abs/x.db"), SqlSource)
    resolver = SourceResolver({"legacy_mysql": "mysql://u:pw@h/db"})
    assert isinstance(resolver.for_table(_table("a", "legacy_mysql")), MySqlSource)
    with pytest.raises(RefdataConfigError, match="ftp://") as caught:
        SourceResolver({"legacy_mysql": "ftp://u:topsecret@h/x"}).for_table(_table("b", "legacy_mysql"))
    assert "topsecret" not in str(caught.value)


def test_without_a_source_or_factory_the_error_names_the_table():
    with pytest.raises(RefdataSourceError, match=r"public\.a.*conn_id 'crm'") as caught:
        SourceResolver({"legacy_mysql": Named("x")}, use_airflow=False).for_table(
            _table("a", "postgres", conn_id="crm")
        )
    assert "legacy_mysql" in str(caught.value)  # the sources that were given
    with pytest.raises(RefdataSourceError, match="source_type 'sql'"):
        SourceResolver(use_airflow=False).for_table(_table("b", "sql"))


def test_without_a_source_airflow_connections_are_the_fallback(monkeypatch):
    # Airflow is installed here: a table naming no given source reads through its Airflow connection.
    monkeypatch.setenv("AIRFLOW_CONN_CRM", "postgres://u:pw@127.0.0.1:1/legacy")
    source = SourceResolver({}).for_table(_table("a", "postgres", conn_id="crm"))
    assert type(source).__name__ == "LegacyPostgresHook" and source.postgres_conn_id == "crm"
    with pytest.raises(RefdataSourceError, match="Airflow connection 'nope'"):
        SourceResolver({}).for_table(_table("b", "postgres", conn_id="nope"))


def test_a_missing_environment_variable_is_named_never_a_value():
    env = {"P_HOST": "db.example", "P_PASSWORD": "pw-secret", "P_PORT": "3306"}
    with pytest.raises(RefdataConfigError) as caught:
        SourceResolver(environ=env).for_table(_table("a", "legacy_mysql", connection_env_prefix="P"))
    message = str(caught.value)
    assert "P_USER" in message and "P_DATABASE" in message
    assert "db.example" not in message and "pw-secret" not in message
    with pytest.raises(RefdataConfigError, match="P_PORT is not a port") as caught:
        SourceResolver(environ={**MYSQL_ENV, "P_PORT": "x-secret"}).for_table(
            _table("b", "legacy_mysql", connection_env_prefix="P")
        )
    assert "x-secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("dsn", "source_type"),
    [
        ("postgresql://u@h/db", "sql"),
        ("mysql://u@h/db", "postgres"),
        ("sqlite:////tmp/x.db", "legacy_mysql"),
        ("oracle://u@h/db", "sql"),
    ],
)
def test_a_dsn_of_another_kind_than_the_source_type_is_refused(dsn: str, source_type: str) -> None:
    with pytest.raises(RefdataConfigError, match=f"cannot feed a {source_type} source"):
        source_from_dsn(dsn, source_type)
