"""Starts the server: the chat page and the JSON API on http://127.0.0.1:7860."""

from __future__ import annotations

import sys

import uvicorn

from assistant.cli import prepare_runtime
from assistant.errors import AssistantError
from assistant.pipeline import Assistant
from assistant.serve.hardening import quiet_logs
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
    if settings.host in ("0.0.0.0", "::") and not settings.allowed_hosts:
        print(
            "app: warning: only requests for 127.0.0.1 and localhost are answered; set "
            "ASSISTANT_ALLOWED_HOSTS to the names staff use (e.g. assistant.example.nhs.uk)",
            file=sys.stderr,
        )
    print(f"Serving on http://{settings.host}:{settings.port}", file=sys.stderr)
    try:
        app = create_app(settings, assistant)
    except AssistantError as err:  # e.g. a malformed ASSISTANT_WIDGET_KEYS
        print(f"app: error: {err}", file=sys.stderr)
        return err.exit_code
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning",
        # X-Forwarded-For/-Proto only from the proxies the settings name (none by default)
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
    )  # fmt: skip
    quiet_logs()  # after uvicorn's logging setup: no question text in the log
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
