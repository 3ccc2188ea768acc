"""A throwaway PostgreSQL cluster and Milvus Lite server for the team gallery tests: the real servers, no mocks.

PostgreSQL comes from the system's packages (`.ci/postgres` installs them under CI): initdb makes a cluster in a
private temporary folder, the server listens on 127.0.0.1 on a free port with trust authentication for its own
roles (a test gives no passwords). PostgreSQL refuses to run as root, so under root (CI) the cluster belongs to the
`postgres` system user and runs as it. Milvus Lite (`python -m milvus_lite server`) answers the same gRPC API a
Milvus cluster does; each test names its own collections' prefix.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUPERUSER = "fvmatch_owner"
START_TIMEOUT_SECONDS = 60


def postgres_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on the PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run it as the `postgres` system user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """`durable=False` (the tests): no fsync, as a throwaway cluster needs none; True (benchmarks): as deployed."""

    def __init__(self, durable: bool = False) -> None:
        self.binaries = postgres_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="fvmatch-postgres-"))
        self.data = self.folder / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        log = self.folder / "server.log"
        subprocess.run(_as_server_user([str(self.binaries / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                                        "-A", "trust", "-E", "UTF8", *([] if durable else ["--no-sync"])]),
                       check=True, capture_output=True, timeout=START_TIMEOUT_SECONDS)
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder}" + ("" if durable else " -c fsync=off -c full_page_writes=off")
        subprocess.run(_as_server_user([str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(log),
                                        "-o", options, "-w", "start"]),
                       check=True, capture_output=True, timeout=START_TIMEOUT_SECONDS)
        self.databases = 0

    def url(self, database: str = "postgres", role: str = SUPERUSER) -> str:
        return f"postgresql://{role}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser; its rows (none for a statement that returns none)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            cursor = connection.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def new_database(self, owner: str = SUPERUSER) -> str:
        """A fresh, empty database (its name)."""
        self.databases += 1
        name = f"gallery{self.databases}"
        self.sql(f'CREATE DATABASE {name} OWNER "{owner}"')
        return name

    def stop(self) -> None:
        subprocess.run(_as_server_user([str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                        "stop"]), capture_output=True, timeout=START_TIMEOUT_SECONDS)
        shutil.rmtree(self.folder, ignore_errors=True)


class MilvusServer:
    """`python -m milvus_lite server` on a free port: the gRPC API of a Milvus cluster, for several processes."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fvmatch-milvus-"))
        self.port = free_port()
        self.log = open(self.folder / "server.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                                         str(self.folder / "data"), "--host", "127.0.0.1", "--port", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"milvus_lite server did not start: {(self.folder / 'server.log').read_text()}")
                time.sleep(0.1)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
