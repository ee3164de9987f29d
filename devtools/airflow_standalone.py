"""``make airflow``: ``airflow standalone`` with the provider and the example DAGs against the demo servers.

Starts (or reuses) the demo's PostgreSQL and MariaDB under ``.demo/servers``, makes sure the warehouse schema,
the legacy data and the fact file are there (without changing anything that is: unlike ``make demo`` this
applies no mutation), then runs ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer) with
``AIRFLOW_HOME=.demo/airflow``, prints the URL and the login, and waits.

Ctrl-C stops everything: ``airflow standalone`` runs in its own process group, so the terminal's SIGINT
reaches only this wrapper, which stops the group in an order that does not hang (see
:meth:`Standalone.stop`; SIGTERM leaves task workers behind); whatever is still alive after a grace period
is terminated, then killed.  The standalone output goes to ``.demo/logs``.

The class :class:`Standalone` is also what ``tests/integration/test_airflow_api.py`` starts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from devtools import demo, sample_data
from devtools.sample_data import SampleSpec

READY_TIMEOUT_SECONDS = 300

# Printed when Airflow is ready (and said in the README): what runs without anybody clicking.
WHAT_STARTS_WHEN = (
    f"{demo.SYNC_DAG_ID}: runs once right away for its latest 01:00 Asia/Shanghai slot (catch-up is off),",
    "  then every day at 01:00 Asia/Shanghai (17:00 UTC);",
    f"{demo.FACTS_DAG_ID} and refdata_reference_health: start when a sync run finishes (its Asset event),",
    "  so the first sync above starts them too;",
    "refdata_review: only when you trigger it.",
    "Times in the UI are in your browser's time zone (user menu > Timezone); Airflow 3 has no server setting.",
)


def redacted(dsn: str) -> str:
    """``scheme://host:port/db`` of a DSN: what to print, without the user or the password."""
    parts = urlsplit(dsn)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}{parts.path}"


STOP_GRACE_SECONDS = 45


class Standalone:
    """One ``airflow standalone`` process group, its readiness and its shutdown."""

    def __init__(self, env: Mapping[str, str], port: int, log_file: Path, *, host: str = "127.0.0.1") -> None:
        self.port = port
        self.log_file = log_file
        self.home = Path(env["AIRFLOW_HOME"])
        self.env = {
            **env,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # The generated admin password lands in AIRFLOW_HOME (read back by `password`).
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            # The DAGs can be triggered from the UI right away.  Nothing starts on its own at once except the
            # sync DAG's latest 01:00 slot (catch-up is off) and what its Asset starts: WHAT_STARTS_WHEN says it.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Four LocalExecutor workers are plenty for the example DAGs (the default is 32 processes).
            "AIRFLOW__CORE__PARALLELISM": "4",
            # Parse the dags folder often so a changed DAG shows up quickly in the UI.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def password(self) -> str | None:
        try:
            return json.loads(self.password_file.read_text()).get("admin")
        except (OSError, ValueError):
            return None

    def start(self) -> Standalone:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")
        # A new session = a new process group holding standalone, its four components and their workers.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env=dict(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> dict:
        """Wait until the API answers and reports the scheduler, dag processor and triggerer healthy."""
        deadline = time.monotonic() + timeout
        health = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {self.process.returncode}; log {self.log_file}")
            health = self.health()
            if health and all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            ):
                if self.password() is not None:
                    return health
            time.sleep(2)
        raise TimeoutError(f"Airflow not ready after {timeout:.0f}s (last health {health}); log {self.log_file}")

    def _members(self) -> list[int]:
        """Live processes of the standalone's process group, the leader first if alive (zombies excluded:
        a reparented zombie may never be reaped here, and it holds no resources anyway)."""
        if self.process is None:
            return []
        self.process.poll()  # reap our own child so it does not count as a member
        return sorted(pid for pid, state in process_group(self.process.pid) if state != "Z")

    def _wait(self, seconds: float, *, leader_only: bool = False) -> bool:
        """Wait until the group is empty (or, with ``leader_only``, only the leader is left)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            members = self._members()
            if not members or (leader_only and members == [self.process.pid]):
                return True
            time.sleep(0.2)
        return False

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> str:
        """Stop every process of the group; returns how ("SIGINT" when the clean path worked).

        ``airflow standalone`` answers SIGINT by sending SIGTERM to its components at once, which can catch the
        scheduler halfway through its own graceful shutdown and leave it waiting forever for its LocalExecutor
        workers.  So the components get SIGINT first (the scheduler tells its workers to finish and waits for
        them; the workers ignore SIGINT), and only when they are gone does the standalone process get it.
        Whatever is still alive after ``grace`` seconds gets SIGTERM, then SIGKILL.
        """
        if self.process is None:
            return "not started"
        leader = self.process.pid
        for pid in self._members():
            if pid != leader:
                _kill(pid, signal.SIGINT)
        self._wait(grace, leader_only=True)
        _kill(leader, signal.SIGINT)
        if self._wait(15):
            return "SIGINT"
        for sig, seconds in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            for pid in self._members():
                _kill(pid, sig)
            if self._wait(seconds):
                self.process.poll()
                return sig.name
        return "some processes survived SIGKILL: " + ", ".join(map(str, self._members()))


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def process_group(pgid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose process group is ``pgid``, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended while we looked
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members.append((int(text.split(" ", 1)[0]), fields[0]))
    return members


def prepare(layout: demo.DemoLayout, spec: SampleSpec) -> tuple[str, str]:
    """Servers up, warehouse schema created, legacy data and fact file present; returns (pg, mysql) DSNs."""
    pg_dsn, mysql_dsn = demo.start_servers(layout)
    demo.create_warehouse_schema(pg_dsn)
    world = sample_data.generate(spec)
    demo.ensure_legacy_loaded(mysql_dsn, world)
    demo.write_facts(layout, world)
    return pg_dsn, mysql_dsn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.airflow_standalone", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1", help="address the API server binds (default loopback)")
    parser.add_argument("--root", type=Path, default=demo.DEFAULT_LAYOUT.root)
    args = parser.parse_args(argv)
    layout = demo.DemoLayout(args.root.resolve())
    print(f"starting the demo servers under {layout.servers}…", flush=True)
    pg_dsn, mysql_dsn = prepare(layout, SampleSpec())
    metadata_dsn = demo.create_database(pg_dsn, "airflow_metadata")
    env = demo.airflow_env(layout.airflow_home, pg_dsn, mysql_dsn, facts_dir=layout.data, metadata_dsn=metadata_dsn)
    standalone = Standalone(env, args.port, layout.logs / "airflow-standalone.log", host=args.host)

    # Ctrl-C in the terminal reaches this process only (standalone has its own group): forward it.
    stopping = False

    def request_stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(f"starting airflow standalone (log {standalone.log_file}); the first start migrates its database…")
    standalone.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        ready = False
        while not stopping and not ready:
            try:
                standalone.wait_ready(timeout=min(5, max(0.0, deadline - time.monotonic())))
                ready = True
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        if ready:
            print()
            print(f"Airflow is ready: {standalone.url}")
            print(f"  login: admin / {standalone.password()}   (stored in {standalone.password_file})")
            print(f"  DAGs: from {demo.REPO_ROOT / 'dags'}")
            for line in WHAT_STARTS_WHEN:
                print(f"    {line}")
            print(f"  warehouse: {redacted(pg_dsn)}")
            print(f"  log: {standalone.log_file}")
            print("Press Ctrl-C to stop.", flush=True)
        while not stopping and standalone.process.poll() is None:
            time.sleep(0.5)
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        print("stopping airflow standalone…", flush=True)
        how = standalone.stop()
        print(f"stopped ({how}). The database servers keep running: `make demo-down` stops them.")
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
