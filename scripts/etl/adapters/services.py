"""Local services for the demo and the tests: a private PostgreSQL cluster, a moto S3 server
and a MongoDB-compatible server (SecantusDB).

Each is started by the project itself, in a folder of its own and on its own port. Starting
twice is harmless (a running service is detected and reused); status says what runs where.
The pipeline reaches every one of them exactly as it reaches production: PostgreSQL through
libpq, S3 through an endpoint URL, MongoDB through pymongo and a mongodb:// URI.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pymongo
from pymongo.errors import PyMongoError

from etl.core.errors import ServiceError


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll `predicate` until it is true; a ServiceError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise ServiceError(f"{what} did not come up within {timeout:.0f}s")


def pid_alive(pidfile: Path) -> int | None:
    """The pid a service wrote into `pidfile`, while that process lives. A child of this
    process that exited is reaped first: a zombie still answers kill(pid, 0)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def stop_process_group(pidfile: Path, what: str, timeout: float) -> None:
    """SIGTERM the service's process group, SIGKILL it after `timeout`, forget its pidfile."""
    pid = pid_alive(pidfile)
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)
        try:
            wait_until(lambda: pid_alive(pidfile) is None, timeout, f"{what} shutdown")
        except ServiceError:
            os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def pg_bindir() -> Path:
    """PG_BINDIR, else `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1])
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            return Path(out.stdout.strip())
    raise ServiceError("PostgreSQL binaries not found",
                       hint="install postgresql-15 or set PG_BINDIR to the folder holding pg_dump")


def pg_tool(name: str) -> str:
    """Full path of a PostgreSQL client binary (pg_dump, pg_restore, psql)."""
    path = pg_bindir() / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError(f"{name} not found in {pg_bindir()} or on PATH",
                       hint="install the PostgreSQL client tools or set PG_BINDIR")


@dataclass
class PgCluster:
    """A private cluster: initdb into `base/data`, listening on 127.0.0.1:`port`.

    initdb and postgres refuse to run as root; as root they run as the `postgres` system
    user with the folder owned by it, as anyone else they run as that user.
    """

    base: Path
    port: int
    user: str = "postgres"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _run(self, argv: list[str], what: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._as_owner(argv), capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(f"{what} failed: {last[0]}", hint=f"see {self.logfile}")
        return proc

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def running(self) -> bool:
        if not (self.data / "postmaster.pid").is_file():
            return False
        proc = subprocess.run(self._as_owner([str(pg_bindir() / "pg_ctl"), "-D", str(self.data), "status"]),
                              capture_output=True, text=True)
        return proc.returncode == 0

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={dbname} connect_timeout=10"

    def init(self) -> None:
        if self.initialised():
            return
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.base, pg.pw_uid, pg.pw_gid)
            # postgres must be able to walk down to the folder
            for parent in self.base.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o711)
        self._run([str(pg_bindir() / "initdb"), "-D", str(self.data), "-U", self.user,
                   "--auth=trust", "-E", "UTF8", "--no-locale", "--no-instructions"], "initdb")

    def start(self) -> None:
        self.init()
        if self.running():
            return
        if port_open("127.0.0.1", self.port):
            raise ServiceError(f"port {self.port} is in use by another server",
                               hint="set LOCAL_PG_PORT in pipeline.local.env, or LOCAL_PG_MANAGED=false to use that server")
        # A scratch restore target: durability settings off, so restores and tests run fast.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_wal_size=2GB -c shared_buffers=256MB -c max_connections=60")
        self._run([str(pg_bindir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                   "-o", options, "-w", "-t", "60", "start"], "starting PostgreSQL")

    def stop(self) -> None:
        if self.running():
            self._run([str(pg_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                      "stopping PostgreSQL")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class MotoServer:
    """moto in server mode: a real S3 HTTP endpoint on 127.0.0.1:`port` (in-memory buckets)."""

    base: Path
    port: int

    @property
    def pidfile(self) -> Path:
        return self.base / "moto.pid"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        return pid_alive(self.pidfile)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/moto-api/", timeout=1) as resp:
                return resp.status < 500
        except OSError:
            return False

    def running(self) -> bool:
        return self.pid() is not None and self._answers()

    def start(self) -> None:
        if self.running():
            return
        if port_open("127.0.0.1", self.port):
            raise ServiceError(f"port {self.port} is in use by another program",
                               hint="point S3_ENDPOINT_URL at a free port in pipeline.local.env")
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.base / "moto.log", "ab")
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        self.pidfile.write_text(str(proc.pid))
        try:
            wait_until(lambda: proc.poll() is None and self._answers(), 30, f"moto S3 server on {self.url}")
        except ServiceError:
            proc.kill()
            raise

    def stop(self) -> None:
        stop_process_group(self.pidfile, "moto", 10)


@dataclass
class MongoServer:
    """The managed MongoDB server: SecantusDB (a MongoDB wire-protocol server on WiredTiger,
    from its own virtualenv, `.venv-mongo`) with its data in `base/data`, listening on
    127.0.0.1:`port`. `auth` requires SCRAM users; `test_commands` enables
    `configureFailPoint`, as mongod's `enableTestCommands` does."""

    base: Path
    port: int
    binary: Path
    auth: bool = False
    test_commands: bool = False

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def pidfile(self) -> Path:
        return self.base / "server.pid"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def pid(self) -> int | None:
        return pid_alive(self.pidfile)

    def answers(self) -> bool:
        """The server completes a MongoDB handshake (not just an open port)."""
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        try:
            client.admin.command("ping")
            return True
        except PyMongoError as exc:
            # With --auth, ping needs no user; anything that answers in the protocol is up.
            return getattr(exc, "code", None) == 13
        finally:
            client.close()

    def running(self) -> bool:
        return self.pid() is not None and self.answers()

    def start(self, timeout: float = 60) -> None:
        if self.running():
            return
        if port_open("127.0.0.1", self.port):
            raise ServiceError(f"port {self.port} is in use by another program",
                               hint="point MONGO_URI at a free port, or MONGO_MANAGED=false to use that server")
        if not self.binary.is_file():
            raise ServiceError(f"the MongoDB server is not installed ({self.binary} is missing)",
                               hint="run `make services-up`, which installs it into .venv-mongo")
        self.data.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port),
                "--storage-path", str(self.data), "--log-level", "WARNING"]
        if self.auth:
            argv.append("--auth")
        if self.test_commands:
            argv.append("--enable-test-commands")
        with open(self.logfile, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=self.base)
        self.pidfile.write_text(str(proc.pid))

        def up() -> bool:
            if proc.poll() is not None:
                tail = self.logfile.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise ServiceError(f"the MongoDB server exited at start: {tail[0][:200]}",
                                   hint=f"see {self.logfile}")
            return self.answers()

        try:
            wait_until(up, timeout, f"the MongoDB server on {self.uri}")
        except ServiceError:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            self.pidfile.unlink(missing_ok=True)
            raise

    def stop(self) -> None:
        stop_process_group(self.pidfile, "MongoDB server", 30)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
