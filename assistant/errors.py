"""Every error the assistant raises on purpose.

::

    AssistantError                 base class; the shells catch this one
    ├── ConfigError                a setting is missing, malformed or contradicts another
    ├── InputError                 a question or request the assistant cannot take (empty, too long)
    │   ├── PersonalDataError      it holds personal data (an NHS number, an email…): not taken
    │   └── QuestionTooLongError   a question over ASSISTANT_MAX_QUESTION_CHARS
    ├── CorpusError                the corpus folder cannot be read at all (missing, not a folder)
    ├── IndexError_                the index cannot be used
    │   ├── IndexNotBuiltError     no index yet: tells how to build one
    │   ├── IndexModelMismatchError  built with another embedding model than the one configured
    │   ├── IndexBuildError        building failed; the previous index keeps serving
    │   └── StoreUnavailableError  the Chroma server is not reachable (HTTP 503 until it is back)
    ├── ModelUnavailableError      the embedding model cannot be loaded (missing, wrong hash)
    ├── LLMError                   the chat model failed to answer (timeout, rate limit, provider
    │                              error); the assistant answers extractively instead
    └── AccessError                a request the server refuses to take
        ├── NotAuthorisedError     no or a wrong bearer token (HTTP 401)
        │   └── WidgetKeyUnknownError  a widget key no configuration holds (HTTP 401)
        ├── OriginRefusedError     a page on an origin not allowed (HTTP 403)
        ├── RateLimitedError       too many requests from one client (HTTP 429, retry_after)
        ├── BusyError              the answer queue stayed full too long (HTTP 503, retry_after)
        ├── WidgetKeyRefusedError  a widget key from an origin it is not bound to, or on a route
        │                          it does not open (HTTP 403)
        ├── SwitchedOffError       uploads; the chat page with a token but no login (HTTP 403)
        ├── NotServedError         a route off with these settings, e.g. the API docs (HTTP 404)
        ├── StorageFullError       the feedback store reached its size cap (HTTP 507)
        └── DatabaseUnavailableError  the feedback database cannot be reached (HTTP 503,
                                   retry_after)

A file of the corpus that cannot be read is not an error: ingestion reports it as a
:class:`~assistant.schema.SkippedFile` and goes on. "Nothing relevant found" is not an
error either: it is an :class:`~assistant.schema.Answer` with ``refused=True``.
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "AssistantError",
    "BusyError",
    "ConfigError",
    "CorpusError",
    "DatabaseUnavailableError",
    "IndexBuildError",
    "IndexError_",
    "IndexModelMismatchError",
    "IndexNotBuiltError",
    "InputError",
    "LLMError",
    "ModelUnavailableError",
    "NotAuthorisedError",
    "NotServedError",
    "OriginRefusedError",
    "PersonalDataError",
    "QuestionTooLongError",
    "RateLimitedError",
    "StorageFullError",
    "StoreUnavailableError",
    "SwitchedOffError",
    "WidgetKeyRefusedError",
    "WidgetKeyUnknownError",
]


class AssistantError(Exception):
    """Base class of the assistant's own errors; ``str(err)`` is a message for a person."""

    #: process exit status the CLI uses for this kind of error
    exit_code: int = 1


class ConfigError(AssistantError):
    exit_code = 2


class InputError(AssistantError):
    exit_code = 2


class CorpusError(AssistantError):
    exit_code = 3


class IndexError_(AssistantError):  # noqa: N801, N818 - do not shadow the builtin
    exit_code = 4


class IndexNotBuiltError(IndexError_):
    pass


class IndexModelMismatchError(IndexError_):
    pass


class IndexBuildError(IndexError_):
    pass


class StoreUnavailableError(IndexError_):
    pass


class ModelUnavailableError(AssistantError):
    exit_code = 5


class LLMError(AssistantError):
    exit_code = 5


class AccessError(AssistantError):
    #: HTTP status of the refusal; seconds after which trying again makes sense, if known
    status: int = 403
    retry_after: int | None = None


class NotAuthorisedError(AccessError):
    status = 401


class OriginRefusedError(AccessError):
    status = 403


class RateLimitedError(AccessError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BusyError(AccessError):
    status = 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuestionTooLongError(InputError):
    """A question over the length limit (``ASSISTANT_MAX_QUESTION_CHARS``); the site owners'
    page counts these refusals (``input_too_long``)."""


# -- pii: the personal-data guard (assistant/privacy.py) ---------------------------------------


class PersonalDataError(InputError):
    """A question or feedback holding personal data, refused before anything stores or logs
    it. ``kinds`` names what was found ("NHS number", "email address"), never the values."""

    reason = "personal_data"

    def __init__(self, kinds: list[str], what: str = "question") -> None:
        self.kinds = list(kinds)
        found = " and ".join([", ".join(self.kinds[:-1]), self.kinds[-1]] if kinds[1:] else kinds)
        done = "answered. Please rephrase it" if what == "question" else "stored. Please send it"
        super().__init__(
            f"Your {what} seems to contain personal data ({found}), so it was not {done} "
            "without anyone's personal details: the guidance does not need them."
        )


class WidgetKeyRefusedError(AccessError):
    """A widget key from an origin it is not bound to, without an origin, or on a route it does
    not open (HTTP 403)."""

    status = 403


class WidgetKeyUnknownError(NotAuthorisedError):
    """metrics: a widget key that no configuration holds, or no longer (HTTP 401), told apart
    from a wrong bearer token."""


# --- hardening --------------------------------------------------------------------------------


class SwitchedOffError(AccessError):
    """A part of the server that is switched off: uploads, or the chat page when an API token is
    set and the page has no login (HTTP 403)."""

    status = 403


class NotServedError(AccessError):
    """A route this server does not serve with its settings, e.g. the API docs (HTTP 404)."""

    status = 404


class StorageFullError(AccessError):
    """limits: a store has reached its configured size and takes no more."""

    status = 507


class DatabaseUnavailableError(AccessError):
    """The feedback database (SQLite file or server) cannot be reached now: HTTP 503 with
    ``Retry-After``. ``database`` names it, password hidden, for the server's log; the message
    leaves it out, as it goes to clients."""

    status = 503

    def __init__(self, message: str, database: str, retry_after: int = 30) -> None:
        super().__init__(message)
        self.database = database
        self.retry_after = retry_after
