"""Every error the assistant raises on purpose.

::

    AssistantError                 base class; the shells catch this one
    ├── ConfigError                a setting is missing, malformed or contradicts another
    ├── InputError                 a question or request the assistant cannot take (empty, too long)
    ├── CorpusError                the corpus folder cannot be read at all (missing, not a folder)
    ├── IndexError_                the index cannot be used
    │   ├── IndexNotBuiltError     no index yet: tells how to build one
    │   ├── IndexModelMismatchError  built with another embedding model than the one configured
    │   └── IndexBuildError        building failed; the previous index keeps serving
    └── ModelUnavailableError      the embedding model cannot be loaded (missing, wrong hash)

A file of the corpus that cannot be read is not an error: ingestion reports it as a
:class:`~assistant.schema.SkippedFile` and goes on. "Nothing relevant found" is not an
error either: it is an :class:`~assistant.schema.Answer` with ``refused=True``.
"""

from __future__ import annotations

__all__ = [
    "AssistantError",
    "ConfigError",
    "CorpusError",
    "IndexBuildError",
    "IndexError_",
    "IndexModelMismatchError",
    "IndexNotBuiltError",
    "InputError",
    "ModelUnavailableError",
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


class ModelUnavailableError(AssistantError):
    exit_code = 5
