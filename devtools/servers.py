"""Start and stop throwaway PostgreSQL and MariaDB servers on loopback, from the installed binaries.

Used by the test harness (``tests/conftest.py``), ``make demo`` and the benchmarks, so that all three run
against real servers without Docker.  Each server lives in its own folder (data, socket, log) and listens
on a free loopback port.  PostgreSQL refuses to run as root, so when we are root it runs as ``nobody``.

Command line (used by the Makefile)::

    python -m devtools.servers start --dir .demo/servers   # prints export lines with the DSNs
    python -m devtools.servers stop --dir .demo/servers
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_SECONDS = 60


class ServerStartError(RuntimeError):
    """A server could not be started; the message says which, why, and where its log is."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def find_postgres_bindir() -> Path:
    """The folder with ``initdb``/``pg_ctl``/``postgres``: newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ServerStartError(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb and no initdb on PATH); "
        "run `make deps` (apt-get install postgresql) first"
    )


def _as_user(user: str | None) -> dict:
    """subprocess arguments that drop to ``user`` with its own group and no supplementary groups."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _run(cmd: list[str], *, user: str | None = None, log: Path | None = None) -> None:
    result = subprocess.run(cmd, **_as_user(user), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()[-2000:]
        where = f" (log: {log})" if log else ""
        raise ServerStartError(f"`{' '.join(cmd)}` failed with exit {result.returncode}{where}: {detail}")


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster: superuser ``postgres``, trust auth on loopback only."""

    root: Path
    port: int = 0
    database: str = "refdata"
    bindir: Path = field(default_factory=find_postgres_bindir)
    #: The server's default ``TimeZone`` (``None``: initdb's, from the machine).
    timezone: str | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def _user(self) -> str | None:
        # initdb and postgres refuse to run as root.
        return "nobody" if os.geteuid() == 0 else None

    def _chown(self, path: Path) -> None:
        if self._user:
            entry = pwd.getpwnam(self._user)
            for dirpath, _dirs, files in os.walk(path):
                os.chown(dirpath, entry.pw_uid, entry.pw_gid)
                for name in files:
                    os.chown(os.path.join(dirpath, name), entry.pw_uid, entry.pw_gid)

    def start(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        if self._user:
            # nobody must be able to reach the folder through its parents.
            for parent in [self.root, *self.root.parents]:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
        self._chown(self.root)
        if not (self.datadir / "PG_VERSION").exists():
            _run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                user=self._user,
            )
        self.port = self.port or free_port()
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=100 -c shared_buffers=256MB -c max_wal_size=4GB"
            + (f" -c timezone={self.timezone}" if self.timezone else "")
        )
        _run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_SECONDS),
                "start",
            ],
            user=self._user,
            log=self.logfile,
        )
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
                **_as_user(self._user),
                capture_output=True,
                check=False,
            )


@dataclass
class MariaDbServer:
    """A throwaway MariaDB server (``--no-defaults``): root over the socket, an app user over TCP."""

    root: Path
    port: int = 0
    database: str = "legacy"
    user: str = "refdata"
    password: str = "refdata-secret-pw"
    process: subprocess.Popen | None = None
    #: The server's ``time_zone`` (``--default-time-zone``, e.g. ``+08:00``; ``None``: the machine's).
    time_zone: str | None = None

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def logfile(self) -> Path:
        return self.root / "mariadb.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "mysqld.pid"

    @property
    def dsn(self) -> str:
        return f"mysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @staticmethod
    def _binary(*names: str) -> str:
        for name in names:
            path = shutil.which(name) or next(
                (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
            )
            if path:
                return path
        raise ServerStartError(
            f"MariaDB binary not found ({' / '.join(names)}); run `make deps` (apt-get install mariadb-server)"
        )

    def _os_user(self) -> str:
        return pwd.getpwuid(os.geteuid()).pw_name

    def start(self) -> MariaDbServer:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.datadir / "mysql").exists():
            _run(
                [
                    self._binary("mariadb-install-db", "mysql_install_db"),
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    f"--user={self._os_user()}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ]
            )
        self.port = self.port or free_port()
        self.launch()
        self._bootstrap()
        return self

    def launch(self) -> None:
        """Start the server process on the existing datadir and wait until it accepts connections."""
        log = open(self.logfile, "ab")
        self.process = subprocess.Popen(
            [
                self._binary("mariadbd", "mysqld"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--pid-file={self.pidfile}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--user={self._os_user()}",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-buffer-pool-size=256M",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
                "--max-connections=200",
                *([f"--default-time-zone={self.time_zone}"] if self.time_zone else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"mariadbd exited with {self.process.returncode} (log {self.logfile}):\n" + _tail(self.logfile)
                )
            if self.socket.exists() and _port_open(self.port):
                return
            time.sleep(0.1)
        raise ServerStartError(
            f"mariadbd did not accept connections within {START_TIMEOUT_SECONDS}s (log {self.logfile}):\n"
            + _tail(self.logfile)
        )

    def root_connect(self, database: str | None = None):
        import MySQLdb

        kwargs = {"unix_socket": str(self.socket), "user": "root", "charset": "utf8mb4"}
        if database:
            kwargs["database"] = database
        return MySQLdb.connect(**kwargs)

    def _bootstrap(self) -> None:
        conn = self.root_connect()
        try:
            cur = conn.cursor()
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4")
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER IF NOT EXISTS '{self.user}'@'{host}' IDENTIFIED BY %s", (self.password,))
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'{host}'")
            conn.commit()
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server (fast shutdown); safe to call twice.  The datadir is kept for ``launch()``."""
        pid = None
        if self.process is not None and self.process.poll() is None:
            pid = self.process.pid
        elif self.pidfile.exists():
            try:
                pid = int(self.pidfile.read_text().strip())
            except ValueError:
                pid = None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process is not None and self.process.pid == pid:
                if self.process.poll() is not None:
                    break
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        self.process = None


def _state_file(root: Path) -> Path:
    return root / "servers.json"


def start_both(root: Path) -> tuple[PostgresServer, MariaDbServer]:
    """Start (or reuse, when already running) both servers under ``root``; remembers their ports."""
    state = {}
    if _state_file(root).exists():
        state = json.loads(_state_file(root).read_text())
    pg = PostgresServer(root / "postgres", port=state.get("pg_port", 0))
    my = MariaDbServer(root / "mariadb", port=state.get("mysql_port", 0))
    if not (pg.port and _port_open(pg.port)):
        pg.port = pg.port if pg.port and not _port_open(pg.port) else 0
        pg.start()
    if not (my.port and _port_open(my.port)):
        my.start()
    _state_file(root).write_text(json.dumps({"pg_port": pg.port, "mysql_port": my.port}))
    return pg, my


def stop_both(root: Path) -> None:
    if not _state_file(root).exists():
        return
    state = json.loads(_state_file(root).read_text())
    PostgresServer(root / "postgres", port=state.get("pg_port", 0)).stop()
    MariaDbServer(root / "mariadb", port=state.get("mysql_port", 0)).stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.servers", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", required=True, type=Path, help="folder holding the servers' data")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.action == "stop":
        stop_both(root)
        print(f"stopped the servers under {root}", file=sys.stderr)
        return 0
    try:
        pg, my = start_both(root)
    except ServerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"export REFDATA_PG_DSN={pg.dsn}")
    print(f"export REFDATA_MYSQL_DSN={my.dsn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
