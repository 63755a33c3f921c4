"""Starts the server: the chat page, the JSON API and the docs on http://127.0.0.1:7860."""

from __future__ import annotations

import sys

import uvicorn

from assistant.cli import prepare_runtime
from assistant.errors import AssistantError
from assistant.pipeline import Assistant
from assistant.serve.web import create_app
from assistant.settings import Settings


def main() -> int:
    prepare_runtime()
    try:
        settings = Settings.from_env()
    except AssistantError as err:
        print(f"app: error: {err}", file=sys.stderr)
        return err.exit_code
    assistant = None
    try:  # load the model and open the index now, so the first question is quick
        assistant = Assistant.from_settings(settings)
    except AssistantError as err:  # e.g. no index yet: serve anyway; /api/health says why
        print(f"app: warning: {err}", file=sys.stderr)
    print(f"Serving on http://{settings.host}:{settings.port}", file=sys.stderr)
    try:
        app = create_app(settings, assistant)
    except AssistantError as err:  # e.g. a malformed ASSISTANT_WIDGET_KEYS
        print(f"app: error: {err}", file=sys.stderr)
        return err.exit_code
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
