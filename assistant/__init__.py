"""Question answering over health and care commissioning guidance, with cited passages.

The pipeline: :mod:`~assistant.ingest` → :mod:`~assistant.chunking` → :mod:`~assistant.embeddings`
/ :mod:`~assistant.index.chroma` (:mod:`~assistant.index`) → :mod:`~assistant.retrieval` →
:mod:`~assistant.answer.extractive`, composed by :class:`~assistant.pipeline.Assistant`. The shells
(:mod:`~assistant.cli`, :mod:`~assistant.serve.web`) are thin layers over it.
"""

from __future__ import annotations

from assistant.errors import AssistantError
from assistant.pipeline import Assistant
from assistant.schema import Answer, Chunk, Citation, Passage, Turn
from assistant.settings import Settings

__all__ = [
    "Answer",
    "Assistant",
    "AssistantError",
    "Chunk",
    "Citation",
    "Passage",
    "Settings",
    "Turn",
]
__version__ = "0.1.0"
