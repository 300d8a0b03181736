"""Real processes on loopback for the fault tests: a private redis-server, gunicorn, a Celery worker, a TCP proxy.

Every process is started in its own session (its own process group) and stopped by that group id, so a test never
leaves a server behind and never touches anything it did not start. Waits poll a condition with a deadline; nothing
sleeps a fixed time hoping a server is ready.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# The keys the subprocesses use; the same as the test settings, so rows encrypted by the test decrypt there.
SECRET_KEY = "test-secret-key-0123456789-0123456789-0123456789-xyz"
FIELD_ENCRYPTION_KEY = "Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1rZXktMDA="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.05):
    """Polls `condition` until it returns something truthy; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # noqa: BLE001 - a server not up yet raises; keep polling
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})")


def app_env(*, database_url: str, redis_url: str, counter_prefix: str, **extra: str) -> dict[str, str]:
    """The environment of an app process: production mode (DEBUG off) on loopback, nothing read from .env."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.faults.proc_settings",
            "DJANGO_READ_DOT_ENV_FILE": "0",
            "PYTHONPATH": str(ROOT),
            "DEBUG": "0",
            "SECRET_KEY": SECRET_KEY,
            "FIELD_ENCRYPTION_KEY": FIELD_ENCRYPTION_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "ALLOW_PRIVATE_URLS": "1",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "FAULTS_COUNTER_PREFIX": counter_prefix,
            "API_RATE_LIMIT": "1000000/min",
            "LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


class Process:
    """A subprocess in its own process group, its output in a log file (shown when a test fails)."""

    registry: list[Process] = []  # the processes of the running test, for the failure report

    def __init__(self, name: str, cmd: list[str], *, env: dict | None = None, cwd: Path = ROOT):
        self.name = name
        Process.registry.append(self)
        self.log = tempfile.NamedTemporaryFile(prefix=f"faults-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(  # noqa: S603 - our own binaries
            cmd, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def kill(self) -> None:
        """SIGKILL the whole process group at once: the machine-lost case, no clean-up of any kind."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        # whatever is left of the group (pool children of a killed parent included)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def output(self, tail: int = 4000) -> str:
        with contextlib.suppress(ValueError):
            self.log.flush()
        try:
            return Path(self.log.name).read_text(errors="replace")[-tail:]
        except OSError:
            return ""


class RedisServer:
    """A private redis-server on its own port, never the shared one. With `persist`, an append-only file that is
    fsynced on every write, so a SIGKILLed server comes back with exactly the keys it had (stale counters
    included: the hard case for the counters)."""

    def __init__(self, *, persist: bool = False):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="faults-redis-")
        self.persist = persist
        self.process: Process | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--appendfsync",
            "always",
            "--protected-mode",
            "no",
        ]
        if self.process is not None:
            self.process.stop()  # a killed predecessor: only its log is left to remove
        self.process = Process(f"redis-{self.port}", cmd)
        wait_until(self.ping, timeout=15, what=f"redis-server on port {self.port}")

    def ping(self) -> bool:
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5).ping()

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Gunicorn:
    """The app under gunicorn, sync workers, on a free loopback port."""

    def __init__(self, env: dict, *, workers: int = 2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            str(VENV_BIN / "gunicorn"),
            "spendctl.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--timeout",
            "30",
            "--graceful-timeout",
            "2",
            "--log-level",
            "warning",
        ]
        self.process = Process(f"gunicorn-{self.port}", cmd, env=env)
        wait_until(self._answers, timeout=60, what=f"gunicorn on port {self.port}", interval=0.2)

    def _answers(self) -> bool:
        if not self.process.alive():
            raise AssertionError(f"gunicorn exited:\n{self.process.output()}")
        httpx.get(self.url + "/healthz", timeout=5)
        return True

    def stop(self) -> None:
        self.process.stop()


class CeleryWorker:
    """`celery -A spendctl worker` (prefork, one pool process) consuming one private queue."""

    def __init__(self, env: dict, *, queue: str, name: str):
        cmd = [
            str(VENV_BIN / "celery"),
            "-A",
            "spendctl",
            "worker",
            "--pool",
            "prefork",
            "-c",
            "1",
            "-Q",
            queue,
            "-n",
            f"{name}@%h",
            "--include",
            "tests.faults._worker",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ]
        self.process = Process(name, cmd, env=env)

    def pool_pids(self) -> list[int]:
        return self.process.children()

    def stop(self) -> None:
        self.process.stop(timeout=5)


class TcpProxy:
    """A loopback TCP proxy (threads) between the app and PostgreSQL that the test can cut.

    `cut()` closes every proxied connection at once (both sides see the socket die, as when a network path or a
    database server goes away). `arm_cut(pattern)` cuts all connections the moment a client sends bytes containing
    `pattern` (e.g. b"COPY": in the middle of an ingest transaction); with `forward=True` those bytes still reach the
    server, which answers, and only its answer is lost (b"COMMIT": committed, but the client cannot know it).
    `refuse(True)` makes new connections fail until `refuse(False)`.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.cuts = 0
        self.armed: tuple[bytes, bool] | None = None
        self.fired = threading.Event()
        self.refusing = False
        self.closed = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(client, selectors.EVENT_READ, server)
            sel.register(server, selectors.EVENT_READ, client)
            while True:
                for key, _ in sel.select(timeout=1.0):
                    src, dst = key.fileobj, key.data
                    data = src.recv(65536)
                    if not data:
                        return
                    armed = self.armed
                    if src is client and armed is not None and armed[0] in data:
                        pattern, forward = armed
                        if forward:  # the server gets it and answers; the answer never reaches the client
                            dst.sendall(data)
                            dst.settimeout(5)
                            with contextlib.suppress(OSError):
                                dst.recv(65536)
                        self.armed = None
                        self.fired.set()
                        self.cut()
                        return
                    dst.sendall(data)
                if self.closed:
                    return
        except (OSError, ValueError):  # a socket closed by cut() under our feet
            return
        finally:
            sel.close()
            self._close_pair(client, server)

    def _close_pair(self, client: socket.socket, server: socket.socket) -> None:
        for s in (client, server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        with self.lock, contextlib.suppress(ValueError):
            self.pairs.remove((client, server))

    def cut(self) -> int:
        """Kills every open proxied connection; returns how many there were."""
        with self.lock:
            pairs = list(self.pairs)
            self.cuts += 1
        for client, server in pairs:
            # RST rather than FIN on the client side: the app sees "connection reset", as on a real failure
            with contextlib.suppress(OSError):
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._close_pair(client, server)
        return len(pairs)

    def arm_cut(self, pattern: bytes, *, forward: bool = False) -> None:
        self.fired.clear()
        self.armed = (pattern, forward)

    def refuse(self, on: bool) -> None:
        self.refusing = on
        if on:
            self.cut()

    def open_connections(self) -> int:
        with self.lock:
            return len(self.pairs)

    def stop(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        self.cut()
