"""An Airflow cluster on the CeleryExecutor on loopback: Redis, PostgreSQL, MariaDB, scheduler, workers.

What ``make test-celery`` runs against (``tests/celery/test_celery_cluster.py``), and what a Celery deployment
of the provider looks like on one machine: under one run folder (in ``.test-celery/``, git-ignored) it starts

1. the warehouse PostgreSQL and the legacy MariaDB (:mod:`devtools.servers`), plus two more databases on the
   PostgreSQL server: ``airflow_metadata`` (the CeleryExecutor refuses SQLite) and ``celery_results`` (the
   Celery result backend, ``db+postgresql://…``);
2. ``redis-server`` on a free loopback port, nothing persisted (the Celery broker);
3. ``airflow db migrate``, then ``airflow scheduler``, ``airflow dag-processor``, ``airflow api-server`` and
   one ``airflow celery worker`` per name in ``workers`` (``--celery-hostname <name>@%h``, small concurrency,
   no log server: the task logs are files in the shared ``AIRFLOW_HOME/logs``).

Every component gets the same environment (:meth:`CeleryCluster.environment`): ``CeleryExecutor``, the broker
and result backend URLs, the DAG bundles, ``REFDATA_CONFIG_DIR``, ``REFDATA_FACT_DIR`` and the provider's
connections as ``AIRFLOW_CONN_*`` — what each worker of a real deployment needs too.  The only per-worker
setting is the task-instance hostname: both workers run on this machine, so each reports
``<name>@<host>`` (:func:`worker_hostname`, Airflow's ``[core] hostname_callable``) and the REST API's task
instances say which worker ran them, as they would on separate hosts.

Each component runs in its own process group with its output in ``logs/<component>.log``.
:meth:`CeleryCluster.stop` stops the workers first (Celery's warm shutdown lets running tasks finish), then
the scheduler, dag-processor and API server, then Redis and the database servers: SIGTERM, a grace period,
then SIGKILL of whatever is left, with a message naming it; the servers' data is deleted, the logs stay.
:meth:`CeleryCluster.log_tails` gives the last lines of every log with passwords masked (for a failing test).

Command line (a cluster to try by hand, Ctrl-C stops it)::

    python -m devtools.celery_cluster [--root .test-celery/manual] [--port 8080]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO_ROOT / ".test-celery"
READY_TIMEOUT_SECONDS = 300
STOP_GRACE_SECONDS = 60
WORKER_ENV = "REFDATA_CELERY_WORKER"
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
# The API server logs the admin password it generated on first start.
_GENERATED_PASSWORD = re.compile(r"(Password for user '[^']*': )\S+")


@functools.cache
def worker_hostname() -> str:
    """``[core] hostname_callable`` of the workers: ``<worker name>@<host name>`` (no DNS lookup; called on
    every task heartbeat); the plain host name without a worker name."""
    name = os.environ.get(WORKER_ENV)
    host = socket.gethostname()
    return f"{name}@{host}" if name else host


def redact(text: str) -> str:
    """Mask the password of every ``scheme://user:password@`` and the API admin's generated one in ``text``."""
    return _GENERATED_PASSWORD.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", text))


def tail(path: Path, lines: int = 30) -> str:
    try:
        return redact("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    except OSError:
        return "(no log)"


class ClusterError(RuntimeError):
    """A component did not start or answer; the message names it and its log."""


@dataclass
class Component:
    """One long-running process (and its children) in its own process group, output to ``log_file``."""

    name: str
    command: list[str]
    env: Mapping[str, str]
    log_file: Path
    process: subprocess.Popen | None = None

    def start(self) -> Component:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=REPO_ROOT,
            )
        return self

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def members(self) -> list[int]:
        """Live processes of the component's group (zombies excluded)."""
        from devtools.airflow_standalone import process_group

        if self.process is None:
            return []
        self.process.poll()
        return sorted(pid for pid, state in process_group(self.process.pid) if state != "Z")

    def _wait_gone(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.members():
                return True
            time.sleep(0.2)
        return not self.members()

    def terminate(self) -> bool:
        """Send SIGTERM to the group leader; False when nothing of the group is running."""
        if self.process is None or not self.members():
            return False
        _signal(self.process.pid, signal.SIGTERM)
        return True

    def finish(self, grace: float = STOP_GRACE_SECONDS) -> str:
        """After :meth:`terminate`: wait ``grace`` s for the whole group, then SIGKILL the rest.

        Returns ``"SIGTERM"`` when the clean path worked, else a message naming the killed processes."""
        if self._wait_gone(grace):
            return "SIGTERM"
        left = self.members()
        for pid in left:
            _signal(pid, signal.SIGKILL)
        self._wait_gone(5)
        return f"SIGKILL after {grace:.0f}s (pids {', '.join(map(str, left))}); see {self.log_file}"

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> str:
        """SIGTERM, wait, SIGKILL (:meth:`terminate` + :meth:`finish`); ``"not running"`` if it was not."""
        return self.finish(grace) if self.terminate() else "not running"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@dataclass
class CeleryCluster:
    """The whole cluster under ``root``; see the module docstring.

    :param root: the run folder (emptied by :meth:`start`).
    :param dag_bundles: bundle name -> folder (each a ``LocalDagBundle``), the same for every component.
    :param config_dir: ``REFDATA_CONFIG_DIR`` of every component.
    :param fact_dir: ``REFDATA_FACT_DIR`` (default ``root/data``).
    :param workers: one Celery worker per name.
    :param concurrency: task slots per worker.
    :param port: the API server's port (0: a free one).
    """

    root: Path
    dag_bundles: Mapping[str, Path]
    config_dir: Path = REPO_ROOT / "config"
    fact_dir: Path | None = None
    workers: Sequence[str] = ("worker-a", "worker-b")
    concurrency: int = 2
    port: int = 0
    components: list[Component] = field(default_factory=list)
    stop_report: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from devtools.servers import MariaDbServer, PostgresServer

        self.root = Path(self.root).resolve()
        self.fact_dir = Path(self.fact_dir or self.root / "data")
        self.pg = PostgresServer(self.root / "servers" / "postgres", database="refdata")
        self.mysql = MariaDbServer(self.root / "servers" / "mariadb", database="legacy")
        self.redis: Component | None = None
        self.redis_port = 0
        self.metadata_dsn = ""
        self.results_dsn = ""
        self._secrets = {
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        }

    # --- layout --------------------------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def warehouse_dsn(self) -> str:
        return self.pg.dsn

    @property
    def legacy_dsn(self) -> str:
        return self.mysql.dsn

    def worker_log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def password(self) -> str | None:
        """The API admin's password, generated by the API server into ``AIRFLOW_HOME``."""
        path = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        try:
            return json.loads(path.read_text()).get("admin")
        except (OSError, ValueError):
            return None

    # --- environment ---------------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The environment of every Airflow component (the workers add only their name)."""
        from devtools import demo

        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "REFDATA_", "PYTEST"))}
        env = demo.airflow_env(
            self.airflow_home,
            self.warehouse_dsn,
            self.legacy_dsn,
            config_dir=self.config_dir,
            facts_dir=self.fact_dir,
            metadata_dsn=self.metadata_dsn,
            base=base,
        )
        bundles = [
            {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
             "kwargs": {"path": str(folder)}}
            for name, folder in self.dag_bundles.items()
        ]  # fmt: skip
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.results_dsn,
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": f"http://localhost:{self.port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__PARALLELISM": str(len(self.workers) * self.concurrency),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
                **self._secrets,
            }
        )
        return env

    def _worker_env(self, env: Mapping[str, str], name: str) -> dict[str, str]:
        return {**env, WORKER_ENV: name, "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname"}

    # --- start ---------------------------------------------------------------------------------------------
    def start(self, log=print) -> CeleryCluster:
        """Start everything and wait until it is ready (stops what it started when something fails)."""
        from devtools import demo

        if self.root.exists():
            shutil.rmtree(self.root)
        self.logs.mkdir(parents=True)
        self.fact_dir.mkdir(parents=True, exist_ok=True)
        try:
            log(f"celery cluster under {self.root}: starting PostgreSQL and MariaDB…")
            self.pg.start()
            self.mysql.start()
            server = self.pg.dsn.rsplit("/", 1)[0] + "/postgres"
            self.metadata_dsn = demo.create_database(server, "airflow_metadata")
            self.results_dsn = demo.create_database(server, "celery_results")
            self._start_redis()
            self.port = self.port or _free_port()
            env = self.environment()
            log("airflow db migrate…")
            self._migrate(env)
            for name, args in (
                ("scheduler", ["scheduler"]),
                ("dag-processor", ["dag-processor"]),
                ("api-server", ["api-server"]),
            ):
                self._start_airflow(name, args, env)
            for name in self.workers:
                # No log server: the API server reads the task logs from the shared AIRFLOW_HOME/logs.
                args = ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(self.concurrency),
                        "--skip-serve-logs"]  # fmt: skip
                self._start_airflow(name, args, self._worker_env(env, name))
            log(f"waiting for the scheduler, dag-processor, API server ({self.url}) and workers…")
            self.wait_ready()
        except BaseException:
            self.stop(log=log)
            raise
        return self

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(binary):
            raise ClusterError("redis-server not found; run `make deps-celery` (apt-get install redis-server)")
        self.redis_port = _free_port()
        folder = self.root / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        command = [binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(folder)]  # fmt: skip
        self.redis = Component("redis", command, dict(os.environ), self.logs / "redis.log").start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.redis.exited() is not None:
                raise ClusterError(f"redis-server exited with {self.redis.exited()}:\n{tail(self.redis.log_file)}")
            if _redis_ping(self.redis_port):
                return
            time.sleep(0.1)
        raise ClusterError(f"redis-server did not answer PING within 30 s (log {self.redis.log_file})")

    def _migrate(self, env: Mapping[str, str]) -> None:
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        log_file = self.logs / "db-migrate.log"
        with open(log_file, "wb") as out:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=600,
            )
        if result.returncode != 0:
            raise ClusterError(f"airflow db migrate failed (exit {result.returncode}):\n{tail(log_file)}")

    def _start_airflow(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        command = [sys.executable, "-m", "airflow", *args]
        self.components.append(Component(name, command, env, self.logs / f"{name}.log").start())

    # --- readiness -----------------------------------------------------------------------------------------
    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def workers_ready(self) -> list[str]:
        """The workers whose log says Celery is ready (``<name>@<host> ready.``)."""
        ready = []
        for name in self.workers:
            try:
                text = self.worker_log(name).read_text(errors="replace")
            except OSError:
                continue
            if re.search(rf"{re.escape(name)}@\S+ ready\.", text):
                ready.append(name)
        return ready

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Until the API reports the metadata DB, scheduler and dag-processor healthy, the admin password exists
        and every worker is ready; a component that exits meanwhile fails at once."""
        deadline = time.monotonic() + timeout
        health: dict | None = None
        while time.monotonic() < deadline:
            for component in self.components:
                if component.exited() is not None:
                    raise ClusterError(
                        f"{component.name} exited with {component.exited()} (log {component.log_file}):\n"
                        + tail(component.log_file)
                    )
            health = self.health()
            healthy = health is not None and all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "dag_processor")
            )
            if healthy and self.password() and len(self.workers_ready()) == len(self.workers):
                return
            time.sleep(2)
        raise ClusterError(
            f"cluster not ready after {timeout:.0f}s: health {health}, workers ready {self.workers_ready()}"
        )

    # --- stop ----------------------------------------------------------------------------------------------
    def stop(self, log=print) -> dict[str, str]:
        """Stop every component (workers first), then Redis and the servers; returns how each stopped
        (``"SIGTERM"``, ``"not running"`` or the SIGKILL message)."""
        # The workers together first (a running task still reports to the API server while they shut down),
        # then the scheduler, dag-processor and API server together, then the broker.
        waves = [
            [c for c in self.components if c.name in self.workers],
            [c for c in self.components if c.name not in self.workers],
            [self.redis] if self.redis is not None else [],
        ]
        for wave in waves:
            running = [c for c in wave if c.terminate()]
            for component in wave:
                how = component.finish() if component in running else "not running"
                self.stop_report[component.name] = how
                if how not in ("SIGTERM", "not running"):
                    log(f"warning: {component.name} did not stop on SIGTERM: {how}")
        for server in (self.pg, self.mysql):
            server.stop()
        if not (self.pg.datadir / "postmaster.pid").exists() and self.mysql.process is None:
            shutil.rmtree(self.root / "servers", ignore_errors=True)  # ~200 MB of throwaway data; logs stay
        return self.stop_report

    def log_tails(self, lines: int = 30) -> str:
        """The last lines of every component's log, passwords masked."""
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            parts.append(f"----- {path} (last {lines} lines)\n{tail(path, lines)}")
        return "\n".join(parts)


def _free_port() -> int:
    from devtools.servers import free_port

    return free_port()


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Start a cluster with the example DAGs and the demo's sample data; Ctrl-C stops it."""
    from devtools import demo, sample_data
    from devtools.sample_data import SampleSpec

    parser = argparse.ArgumentParser(prog="python -m devtools.celery_cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT / "manual")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    cluster = CeleryCluster(args.root, {"refdata-examples": REPO_ROOT / "dags"}, port=args.port)
    stopping = False

    def request_stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        cluster.start(log=lambda m: print(m, flush=True))
        demo.create_warehouse_schema(cluster.warehouse_dsn)
        world = sample_data.generate(SampleSpec())
        demo.ensure_legacy_loaded(cluster.legacy_dsn, world)
        sample_data.write_facts(world, cluster.fact_dir / sample_data.facts_file_name(world.spec))
        print(f"Airflow on Celery is ready: http://localhost:{cluster.port}  (user admin, password in "
              f"{cluster.airflow_home / 'simple_auth_manager_passwords.json.generated'})")  # fmt: skip
        print(f"  workers: {', '.join(cluster.workers)}; logs under {cluster.logs}. Press Ctrl-C to stop.", flush=True)
        while not stopping:
            time.sleep(0.5)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping the cluster…", flush=True)
        print(", ".join(f"{name}: {how}" for name, how in cluster.stop().items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
