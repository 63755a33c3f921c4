"""The server shells over one :class:`~assistant.pipeline.Assistant`: the HTTP API, the chat page
and the widget (:mod:`~assistant.serve.web`, :mod:`~assistant.serve.ui`, ``static/widget.js``),
with what guards them (:mod:`~assistant.serve.access`) and the feedback they store
(:mod:`~assistant.records.feedback`)."""

__all__: list[str] = []
