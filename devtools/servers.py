"""Real servers for the tests and the benchmarks: app.py in its own process, static host pages.

Failures raise :class:`ServerStartError` (not ``pytest.fail``) so the benchmarks can use these
too; the tests wrap them (``tests/servers.py``).
"""

from __future__ import annotations

import functools
import os
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
    "REPO",
    "AppProcess",
    "ServerStartError",
    "app_environment",
    "free_port",
    "running_app",
    "start_app",
    "static_site",
    "stop_process",
    "wait_for_health",
]

REPO = Path(__file__).resolve().parents[1]
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
