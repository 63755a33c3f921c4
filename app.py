"""Starts the server: the chat page, the JSON API and the docs on http://127.0.0.1:7860."""

from __future__ import annotations

import sys

import uvicorn

from assistant.cli import prepare_runtime
from assistant.errors import AssistantError
from assistant.settings import Settings
from assistant.web import create_app


def main() -> int:
    prepare_runtime()
    try:
        settings = Settings.from_env()
    except AssistantError as err:
        print(f"app: error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"Serving on http://{settings.host}:{settings.port}", file=sys.stderr)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
