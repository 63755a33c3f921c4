"""Real servers for the tests and the benchmarks: app.py in its own process, static host pages,
a Chroma server (``chroma run``) and nginx in front of several app.py replicas.

Failures raise :class:`ServerStartError` (not ``pytest.fail``) so the benchmarks can use these
too; the tests wrap them (``tests/servers.py``).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

__all__ = [
    "NGINX_CONF",
    "REPO",
    "AppProcess",
    "ChromaProcess",
    "ServerStartError",
    "app_environment",
    "free_port",
    "running_app",
    "running_nginx",
    "start_app",
    "static_site",
    "stop_process",
    "wait_for_health",
]

REPO = Path(__file__).resolve().parents[1]
#: the nginx site an operator starts from (two replicas on :7861 and :7862, listening on :8080)
NGINX_CONF = REPO / "deploy" / "nginx" / "assistant.conf"
#: how much of a failed server's log an exception carries
LOG_TAIL_CHARS = 4000


class ServerStartError(RuntimeError):
    """A server exited before it answered, or did not answer in time; the message holds its log."""


@dataclass(frozen=True)
class AppProcess:
    """``app.py`` running in its own process."""

    process: subprocess.Popen[bytes]
    url: str  # its base URL, http://127.0.0.1:<port>
    log: Path  # its stdout and stderr
    started: float  # time.perf_counter() just before it was started

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def free_port() -> int:
    """A TCP port free on loopback now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_environment(env: Mapping[str, str], port: int) -> dict[str, str]:
    """This process's environment without its ``ASSISTANT_*`` variables, offline, plus ``env``."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")},
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        **env,
        "ASSISTANT_PORT": str(port),
    }


def start_app(env: Mapping[str, str], log: Path, *, port: int | None = None) -> AppProcess:
    """Start ``app.py`` as `make run` does, its output to ``log``; does not wait for it."""
    port = port or free_port()
    with log.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")],
            env=app_environment(env, port),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return AppProcess(process, f"http://127.0.0.1:{port}", log, started)


def wait_for_health(app: AppProcess, *, timeout: float = 120.0, poll: float = 0.3) -> None:
    """Return once ``GET /api/health`` answers 200; :class:`ServerStartError` if ``app`` exits
    first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise ServerStartError(
                f"app.py exited early with {app.process.returncode}:\n{app.log_tail()}"
            )
        try:
            if httpx.get(f"{app.url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)
    raise ServerStartError(f"app.py did not answer within {timeout:g} s:\n{app.log_tail()}")


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 20.0) -> None:
    """Terminate ``process``; kill it if it has not exited after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_app(
    env: Mapping[str, str],
    log: Path,
    *,
    port: int | None = None,
    timeout: float = 120.0,
    poll: float = 0.3,
) -> Iterator[AppProcess]:
    """``app.py`` started with ``env`` and answering ``/api/health``; stopped on exit."""
    app = start_app(env, log, port=port)
    try:
        wait_for_health(app, timeout=timeout, poll=poll)
        yield app
    finally:
        stop_process(app.process)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_site(folder: Path, *, port: int | None = None) -> Iterator[str]:
    """Serve ``folder`` over HTTP on loopback (a host page on its own origin); yield its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", port or 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll ``url`` until it answers (any status); :class:`ServerStartError` if ``process``
    exits first or 60 s pass."""
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            raise ServerStartError(f"{what} did not start:\n{tail}")
        time.sleep(0.2)


class ChromaProcess:
    """A real Chroma server (``chroma run`` from the chromadb package) on loopback; it can be
    stopped and started again on the same data (a server going away and coming back)."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port
        self.log = path.parent / f"chroma-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> tuple[str, int]:
        """Start it and wait for its heartbeat; returns (host, port)."""
        chroma = Path(sys.executable).with_name("chroma")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1",
                 "--port", str(self.port)],
                stdout=log, stderr=log, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
            )  # fmt: skip
        heartbeat = f"http://127.0.0.1:{self.port}/api/v2/heartbeat"
        _wait_until_up(heartbeat, self.proc, self.log, "chroma run")
        return "127.0.0.1", self.port

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


def _nginx_site(upstreams: list[str], port: int) -> str:
    """The shipped site (:data:`NGINX_CONF`) with its replica addresses and port replaced."""
    site = NGINX_CONF.read_text(encoding="utf-8")
    for shipped, actual in zip(("127.0.0.1:7861", "127.0.0.1:7862"), upstreams, strict=True):
        site = site.replace(shipped, actual)
    return re.sub(r"listen 8080;", f"listen 127.0.0.1:{port};", site)


@contextmanager
def running_nginx(upstreams: list[str], folder: Path) -> Iterator[str]:
    """Debian's nginx, in the foreground, serving the shipped site in front of ``upstreams``
    (two ``host:port``); yields its base URL. Its logs and temporary files stay in ``folder``."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise ServerStartError("nginx is not installed: run `make services`")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (folder / "site.conf").write_text(_nginx_site(upstreams, port), encoding="utf-8")
    temp = " ".join(
        f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                           "uwsgi", "scgi")
    )  # fmt: skip
    (folder / "nginx.conf").write_text(
        f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} warn;\n"
        f"events {{ worker_connections 256; }}\n"
        # which replica answered each request: two addresses when nginx tried one, then the other
        f"http {{ log_format upstream '$uri $status $upstream_addr'; "
        f"access_log {folder / 'upstream.log'} upstream; {temp} "
        f"include {folder / 'site.conf'}; }}\n",
        encoding="utf-8",
    )
    log = folder / "nginx.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", "daemon off;"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/metrics", proc, log, "nginx")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
