"""docker-compose.yaml cannot run here (no Docker engine), so check what can be checked without it.

It parses; every service it depends on exists; every file, folder, build context and Dockerfile it names is
in the repo; named volumes are declared; host ports are unique; the Airflow image pins the Airflow version of
the lock file; and the connections it sets through ``AIRFLOW_CONN_*`` are the ones the DAGs use, pointing at
the compose services with the credentials those services are created with.
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
AIRFLOW_COMPONENTS = {"api-server", "scheduler", "dag-processor", "triggerer"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the "KEY=value" list form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _container_port(service: dict) -> int:
    image = service.get("image", "")
    if image.startswith("postgres"):
        return 5432
    if image.startswith("mysql"):
        return 3306
    raise AssertionError(f"no known port for image {image!r}")


def test_parses_with_the_expected_services(services):
    images = {name: s.get("image", "") for name, s in services.items()}
    assert images["warehouse"].startswith("postgres:")
    assert re.fullmatch(r"mysql:8(\.\d+)*", images["legacy-mysql"])
    components = {cmd[0] for s in services.values() if (cmd := _command(s))}
    assert AIRFLOW_COMPONENTS <= components, f"missing Airflow components: {AIRFLOW_COMPONENTS - components}"


def test_every_dependency_is_a_service(services):
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dependency in depends if isinstance(depends, list) else depends.keys():
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_build_contexts_and_dockerfiles_exist(services):
    builds = [s["build"] for s in services.values() if "build" in s]
    assert builds, "the Airflow services must build the provider image from the repo"
    for build in builds:
        context = (REPO_ROOT / build["context"]).resolve()
        assert context.is_dir(), context
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), dockerfile
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY") and "--from" not in line:
                sources = [a for a in shlex.split(line)[1:-1] if not a.startswith("--")]
                for source in sources:
                    assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"


def test_bind_mounts_and_files_exist(compose, services):
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume["source"]
            if source.startswith((".", "/")):
                assert (REPO_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        entrypoint = service.get("entrypoint") or []
        for arg in entrypoint if isinstance(entrypoint, list) else shlex.split(entrypoint):
            if "/" in arg and not arg.startswith("/"):
                assert (REPO_ROOT / arg).is_file(), f"{name} runs missing {arg}"


def test_init_sql_folders_hold_the_repo_ddl(services):
    mounts = {
        name: [v.split(":")[0] for v in s.get("volumes", []) if "docker-entrypoint-initdb.d" in v]
        for name, s in services.items()
    }
    assert mounts["warehouse"] == ["./sql/warehouse"]
    assert mounts["legacy-mysql"] == ["./sql/legacy"]
    assert list((REPO_ROOT / "sql/warehouse").glob("*.sql")) and list((REPO_ROOT / "sql/legacy").glob("*.sql"))


def test_host_ports_are_unique_and_map_the_service_ports(services):
    seen: dict[str, str] = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            host, container = str(port).rsplit(":", 1)
            assert host not in seen, f"host port {host} used by {seen.get(host)} and {name}"
            seen[host] = name
            if name == "airflow-apiserver":
                assert container == "8080"
            else:
                assert int(container) == _container_port(service)
    assert seen.get("8080") == "airflow-apiserver"


def test_image_pins_the_locked_airflow_version():
    locked = re.search(r"^apache-airflow==(\S+)$", (REPO_ROOT / "requirements/lock.txt").read_text(), re.M)
    dockerfile = (REPO_ROOT / "docker/Dockerfile").read_text()
    assert f"ARG AIRFLOW_VERSION={locked.group(1)}" in dockerfile
    assert "requirements/lock.txt" in dockerfile


def _compose_connections(services: dict) -> dict[str, str]:
    conns: dict[str, str] = {}
    for service in services.values():
        for key, value in _environment(service).items():
            if key.startswith("AIRFLOW_CONN_"):
                assert conns.setdefault(key[len("AIRFLOW_CONN_") :].lower(), value) == value
    return conns


def _dag_conn_ids() -> set[str]:
    """Connection ids the example DAGs use: ``*conn_id`` keyword arguments in dags/, plus the defaults of the
    provider's operators for the ones the DAGs leave out."""
    conn_ids: set[str] = set()
    for path in (REPO_ROOT / "dags").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg and node.arg.endswith("conn_id"):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    conn_ids.add(node.value.value)
    from airflow_provider_refdata.operators import HybridReferenceOperator, ReferenceSyncOperator

    for operator in (ReferenceSyncOperator, HybridReferenceOperator):
        for name, parameter in inspect.signature(operator.__init__).parameters.items():
            if name.endswith("conn_id") and isinstance(parameter.default, str):
                conn_ids.add(parameter.default)
    return conn_ids


# Connections the operators look up but do without: the YAML hook only reads a base_path from it, and the
# shipped reference_sync.yml resolves its files relative to itself; without the health webhook the alerts are
# only logged (ReferenceHealthNotifier(missing_connection="warn")).
OPTIONAL_CONN_IDS = {"refdata_yaml", "refdata_health_webhook"}


def test_connections_are_the_ones_the_dags_use(services):
    dag_conn_ids = _dag_conn_ids()
    assert {"refdata_warehouse", "refdata_legacy_mysql"} <= dag_conn_ids
    missing = dag_conn_ids - OPTIONAL_CONN_IDS - set(_compose_connections(services))
    assert not missing, f"the DAGs use connections compose does not set: {missing}"


def test_connection_uris_point_at_the_compose_services(services):
    conns = _compose_connections(services)
    expected = {
        "refdata_warehouse": ("postgres", "warehouse", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"),
        "refdata_legacy_mysql": ("mysql", "legacy-mysql", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"),
    }
    for conn_id, (scheme, service_name, user_key, password_key, db_key) in expected.items():
        uri = urlsplit(conns[conn_id])
        service = services[service_name]
        env = _environment(service)
        assert uri.scheme == scheme
        assert uri.hostname == service_name
        assert uri.port == _container_port(service)
        assert unquote(uri.username) == env[user_key]
        assert unquote(uri.password) == env[password_key]
        assert uri.path.lstrip("/") == env[db_key]


def test_seed_uses_the_legacy_service_credentials(services):
    seed_dsn = _environment(services["refdata-seed"])["REFDATA_MYSQL_DSN"]
    assert seed_dsn == _compose_connections(services)["refdata_legacy_mysql"]
    seed_script = (REPO_ROOT / "docker/seed.sh").read_text()
    assert "devtools.sample_data load" in seed_script
    assert (REPO_ROOT / "devtools/sample_data.py").is_file()


def test_airflow_services_share_the_config_and_dags(services):
    for name, service in services.items():
        command = _command(service)
        if not command or command[0] not in AIRFLOW_COMPONENTS:
            continue
        env = _environment(service)
        mounts = {v.split(":")[1] for v in service.get("volumes", [])}
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] in mounts, name
        assert env["REFDATA_CONFIG_DIR"] in mounts, name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/"), name
