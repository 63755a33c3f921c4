"""Every error the assistant raises on purpose.

::

    AssistantError                 base class; the shells catch this one
    ├── ConfigError                a setting is missing, malformed or contradicts another
    ├── InputError                 a question or request the assistant cannot take (empty, too long)
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
        ├── OriginRefusedError     a page on an origin not allowed (HTTP 403)
        ├── RateLimitedError       too many requests from one client (HTTP 429, retry_after)
        ├── BusyError              the answer queue stayed full too long (HTTP 503, retry_after)
        └── StorageFullError       the feedback store reached its size cap (HTTP 507)

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
    "IndexBuildError",
    "IndexError_",
    "IndexModelMismatchError",
    "IndexNotBuiltError",
    "InputError",
    "LLMError",
    "ModelUnavailableError",
    "NotAuthorisedError",
    "OriginRefusedError",
    "RateLimitedError",
    "StorageFullError",
    "StoreUnavailableError",
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


class StorageFullError(AccessError):
    """limits: a store has reached its configured size and takes no more."""

    status = 507
