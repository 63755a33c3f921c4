"""Widget keys: keys for the embeddable widget, separate from the API token, each bound to the
origins of the pages that may use it.

``ASSISTANT_WIDGET_KEYS`` (``KEY=ORIGIN[ ORIGIN...][;KEY=ORIGIN...]``) and the file named by
``ASSISTANT_WIDGET_KEYS_FILE`` (one ``KEY=ORIGIN ORIGIN`` a line, ``#`` comments) say which keys
exist; the file is read again whenever it changes, so a key added, changed or removed there takes
effect on the next request. A widget key may only ask and send feedback
(:data:`WIDGET_PATHS`), only from a page on one of its origins, and only so often: per visitor
(client address and key) ``per_minute`` times a minute, per key :data:`KEY_RATE_FACTOR` times
that. Keys are compared in constant time. Nothing here knows about HTTP frameworks except
:class:`WidgetCORSMiddleware`, which lets the keys' origins call the widget's routes.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from assistant.errors import (
    ConfigError,
    RateLimitedError,
    WidgetKeyRefusedError,
    WidgetKeyUnknownError,
)
from assistant.serve.access import RateLimiter
from assistant.settings import Settings

__all__ = [
    "KEY_HEADER",
    "KEY_RATE_FACTOR",
    "MIN_KEY_CHARS",
    "WIDGET_PATHS",
    "KeyFile",
    "WidgetCORSMiddleware",
    "WidgetKeys",
    "parse_keys",
]

log = logging.getLogger(__name__)

#: the request header the widget sends its key in
KEY_HEADER = "X-Widget-Key"
#: the only routes a widget key opens: asking and rating an answer
WIDGET_PATHS = frozenset({"/api/ask", "/api/ask/stream", "/api/feedback"})
#: a key's requests a minute, across all its visitors, as a multiple of one visitor's
KEY_RATE_FACTOR = 10
#: shortest key accepted (``secrets.token_urlsafe(24)`` gives 32 characters)
MIN_KEY_CHARS = 16
_MAKE_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'
_ORIGIN = re.compile(r"https?://[a-z0-9.\-\[\]:]+")
_KEY = re.compile(r"[A-Za-z0-9._~+/=-]+")

KeyMap = dict[str, frozenset[str]]


def _parse_entry(entry: str, where: str) -> tuple[str, frozenset[str]]:
    """One ``KEY=ORIGIN ORIGIN`` entry; :class:`ConfigError` saying ``where`` and why."""
    key, sep, rest = entry.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(f"{where}: no '=' (write KEY=ORIGIN, e.g. KEY=https://intranet.nhs.uk)")
    if len(key) < MIN_KEY_CHARS or not _KEY.fullmatch(key):
        raise ConfigError(
            f"{where}: the key must be at least {MIN_KEY_CHARS} letters, digits or -_.~+/= "
            f"with no spaces (make one with {_MAKE_KEY})"
        )
    origins = [o.rstrip("/").lower() for o in rest.split()]
    if not origins:
        raise ConfigError(f"{where}: the key has no origin (write KEY=https://intranet.nhs.uk)")
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"{where}: {origin!r} is not an origin like https://intranet.example.org or "
                "http://127.0.0.1:8080 (scheme, host and port only: no path, no '*')"
            )
    return key, frozenset(origins)


def parse_keys(text: str, source: str, *, lines: bool = False) -> KeyMap:
    """The key → origins map of ``text``: entries separated by ``;`` (and, with ``lines``, by
    new lines, ``#`` starting a comment). A key given twice gets the origins of both entries.
    A malformed entry is a :class:`ConfigError` naming ``source`` and the entry (not the key)."""
    keys: KeyMap = {}
    if lines:
        raw = [(f"{source}, line {n}", line.split("#", 1)[0]) for n, line in
               enumerate(text.splitlines(), 1)]  # fmt: skip
    else:
        raw = [(f"{source}, entry {n}", part) for n, part in enumerate(text.split(";"), 1)]
    for where, entry in raw:
        if not entry.strip():
            continue
        key, origins = _parse_entry(entry, where)
        keys[key] = keys.get(key, frozenset()) | origins
    return keys


def _merge(*maps: Mapping[str, frozenset[str]]) -> KeyMap:
    merged: KeyMap = {}
    for keys in maps:
        for key, origins in keys.items():
            merged[key] = merged.get(key, frozenset()) | origins
    return merged


class KeyFile:
    """The keys in a file, read again when its modification time or size changes.

    A file that is missing or malformed when read again gives no keys at all (every key of the
    file stops working: a revocation must never be undone by a typo) and an error in the log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._keys: KeyMap = {}
        self._lock = threading.Lock()
        self._keys = self._read(strict=True)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _read(self, *, strict: bool) -> KeyMap:
        self._seen = self._stamp()
        source = f"ASSISTANT_WIDGET_KEYS_FILE ({self.path})"
        try:
            text = self.path.read_text(encoding="utf-8")
            return parse_keys(text, source, lines=True)
        except (OSError, UnicodeDecodeError) as err:
            problem: Exception = ConfigError(f"{source} cannot be read: {err.__class__.__name__}")
        except ConfigError as err:
            problem = err
        if strict:
            raise problem
        log.error("%s; no key of that file works until it is fixed", problem)
        return {}

    def keys(self) -> KeyMap:
        """The file's keys now (re-read first if the file changed)."""
        with self._lock:
            if self._stamp() != self._seen:
                self._keys = self._read(strict=False)
            return self._keys


class WidgetKeys:
    """Which widget keys exist, what they may do, and how often."""

    def __init__(
        self,
        inline: str = "",
        file: Path | None = None,
        per_minute: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inline = parse_keys(inline, "ASSISTANT_WIDGET_KEYS")
        self._file = KeyFile(file) if file is not None else None
        self.per_visitor = RateLimiter(per_minute, clock)
        self.per_key = RateLimiter(per_minute * KEY_RATE_FACTOR, clock)
        self._warned = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> WidgetKeys:
        """The keys of ``settings``; :class:`ConfigError` for a malformed value or file."""
        keys = cls(settings.widget_keys, settings.widget_keys_file, settings.widget_rate_per_minute)
        if keys.active and not settings.api_token:
            log.warning(
                "widget keys are set but ASSISTANT_API_TOKEN is not: the API stays open to "
                "anyone without a key; set a token so that pages need their widget key"
            )
        return keys

    @property
    def active(self) -> bool:
        """Whether widget keys are configured at all (a keys file counts, even if empty now)."""
        return bool(self._inline) or self._file is not None

    def current(self) -> KeyMap:
        """Every key valid now, with its origins."""
        return _merge(self._inline, self._file.keys() if self._file else {})

    def allows_origin(self, origin: str) -> bool:
        """Whether some key is bound to ``origin`` (for CORS on the widget's routes)."""
        return any(origin in origins for origins in self.current().values())

    def _origins_of(self, given: str) -> frozenset[str] | None:
        """The origins of ``given``, compared with every key in constant time; None: unknown."""
        found: frozenset[str] | None = None
        encoded = given.encode()
        for key, origins in self.current().items():
            if secrets.compare_digest(encoded, key.encode()):
                found = origins
        return found

    def admit(self, given: str, origin: str | None, visitor: str) -> None:
        """Let a widget-key request through, or raise: an unknown key 401, a page on an origin
        the key is not bound to (or no ``Origin``) 403, over its rate 429."""
        origins = self._origins_of(given.strip())
        if origins is None:
            raise WidgetKeyUnknownError("this widget key is not valid (it may have been revoked)")
        if not origin:
            raise WidgetKeyRefusedError(
                "a widget key works only from a web page (the request has no Origin)"
            )
        if origin not in origins:
            raise WidgetKeyRefusedError(f"this widget key may not be used from pages on {origin}")
        bucket = given.strip()
        self.per_visitor.check(f"{visitor} {bucket}")
        try:
            self.per_key.check(bucket)
        except RateLimitedError as err:
            raise RateLimitedError(
                f"too many questions through this widget key (limit "
                f"{self.per_key.per_minute} a minute); try again in {err.retry_after} s",
                retry_after=err.retry_after or 1,
            ) from None

    @staticmethod
    def refuse_elsewhere() -> None:
        """A widget key on a route it does not open: 403."""
        raise WidgetKeyRefusedError(
            "a widget key may only ask questions and send feedback (/api/ask, /api/ask/stream, "
            "/api/feedback); other routes need the API token"
        )

    def warn_token_in_page(self, origin: str) -> None:
        """Log, once, that the API token came from a page (the widget's ``data-token``)."""
        if self._warned.is_set():
            return
        self._warned.set()
        log.warning(
            "the API token was sent by a page on %s (a widget with data-token?): anyone who "
            "views that page can read the token. Give the widget a key instead "
            "(ASSISTANT_WIDGET_KEYS, data-key); data-token will stop working in a later release",
            origin,
        )


class WidgetCORSMiddleware:
    """CORS for the whole app as :class:`CORSMiddleware` with ``allow_origins``; on the widget's
    routes (:data:`WIDGET_PATHS`) also for every origin a widget key is bound to at the time of
    the request (so keys from a file that changed need no restart)."""

    def __init__(self, app: ASGIApp, /, *, keys: WidgetKeys, **options: Any) -> None:
        self.general = CORSMiddleware(app, **options)
        self.widget = _KeyOriginsCORS(app, keys=keys, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        widget_route = scope["type"] == "http" and scope.get("path") in WIDGET_PATHS
        await (self.widget if widget_route else self.general)(scope, receive, send)


class _KeyOriginsCORS(CORSMiddleware):
    def __init__(self, app: ASGIApp, *, keys: WidgetKeys, **options: Any) -> None:
        super().__init__(app, **options)
        self._keys = keys

    def is_allowed_origin(self, origin: str) -> bool:
        return super().is_allowed_origin(origin) or self._keys.allows_origin(origin)
