"""The routes outside the API: the embeddable widget script (the chat page at ``/`` is the
Gradio app, mounted by :func:`assistant.serve.web.create_app`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

__all__ = ["WIDGET_JS", "router"]

WIDGET_JS = Path(__file__).with_name("static") / "widget.js"

router = APIRouter(include_in_schema=False)


@router.get("/widget.js")
def widget() -> FileResponse:
    """The widget script, for pages on any origin (it calls the API, which checks origins)."""
    return FileResponse(
        WIDGET_JS,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
    )
