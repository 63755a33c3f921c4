"""The hardening of the HTTP shell in-process (TestClient, fake embedder): security headers,
Gradio's routes under the API's rules, uploads and docs off, Host check, the hardening settings,
logs without question text, the user's text shown as text, zero-width characters."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from assistant.conversation import clean_question
from assistant.errors import ConfigError, IndexNotBuiltError
from assistant.ingest.text import clean_line
from assistant.pipeline import Assistant
from assistant.serve.hardening import (
    QuestionFreeLogs,
    content_security_policy,
    public_message,
    quiet_logs,
)
from assistant.serve.ui import md_text, plain_text, text_user_messages
from assistant.serve.web import create_app
from assistant.settings import Settings

HOSTS = ("testserver",)
TOKEN = "tok-harden-1"
SECRET = "Does patient Zanzibar Quuxley qualify?"


def _client(tiny_assistant: Assistant, tmp_path: Path, **settings: object) -> TestClient:
    values: dict[str, object] = {"data_dir": tmp_path / "data", "allowed_hosts": HOSTS}
    values.update(settings)
    return TestClient(create_app(Settings(**values), tiny_assistant))  # type: ignore[arg-type]


@pytest.fixture
def client(tiny_assistant: Assistant, tmp_path: Path) -> Iterator[TestClient]:
    with _client(tiny_assistant, tmp_path, rate_limit_per_minute=3) as c:
        yield c


# -- security headers ------------------------------------------------------------------------


def test_every_response_has_the_security_headers(client: TestClient) -> None:
    for path in ("/", "/api/health", "/widget.js", "/config", "/no-such-page"):
        r = client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path
        assert "camera=()" in r.headers["permissions-policy"], path
        assert r.headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path


def test_the_csp_names_no_other_origin() -> None:
    csp = content_security_policy(())
    assert "default-src 'self'" in csp
    assert "object-src 'none'" in csp
    assert "http" not in csp
    assert "*" not in csp


def test_frame_ancestors_come_from_the_settings(tiny_assistant: Assistant, tmp_path: Path) -> None:
    intranet = "https://intranet.example.nhs.uk"
    with _client(tiny_assistant, tmp_path, frame_ancestors=(intranet,)) as c:
        r = c.get("/")
    assert f"frame-ancestors {intranet}" in r.headers["content-security-policy"]
    assert "x-frame-options" not in r.headers  # it cannot name an origin; the CSP does


def test_the_widget_script_may_be_loaded_by_any_page(client: TestClient) -> None:
    r = client.get("/widget.js")
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"
    assert r.headers["access-control-allow-origin"] == "*"


# -- Gradio's routes -------------------------------------------------------------------------


def _join(client: TestClient, session: str, **headers: str) -> int:
    body = {"data": ["What is commissioning?", []], "fn_index": 0, "session_hash": session}
    return client.post("/gradio_api/queue/join", json=body, headers=headers).status_code


def test_uploads_are_refused(client: TestClient) -> None:
    r = client.post("/gradio_api/upload", files={"files": ("a.txt", b"x" * 1000, "text/plain")})
    assert r.status_code == 403
    assert "uploads are off" in r.json()["error"]


def test_gradio_event_calls_count_against_the_rate_limit(client: TestClient) -> None:
    assert [_join(client, f"s{i}") for i in range(4)] == [200, 200, 200, 429]
    assert client.post("/api/search", json={"question": "commissioning"}).status_code == 429


def test_gradio_event_calls_from_another_origin_are_refused(client: TestClient) -> None:
    assert _join(client, "evil", Origin="http://evil.example") == 403
    assert _join(client, "own", Origin="http://testserver") == 200


def test_with_a_token_and_no_login_the_chat_page_is_off(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    with _client(tiny_assistant, tmp_path, api_token=TOKEN) as c:
        page = c.get("/")
        assert page.status_code == 403
        assert "ASSISTANT_UI_AUTH" in page.json()["error"]
        assert c.get("/config").status_code == 403
        assert _join(c, "s1") == 403
        assert c.get("/widget.js").status_code == 200
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert c.post("/api/search", json={"question": "guides"}, headers=auth).status_code == 200


def test_with_a_token_and_a_login_the_page_asks_for_the_login(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    with _client(tiny_assistant, tmp_path, api_token=TOKEN, ui_auth="staff:pw-1") as c:
        assert c.get("/config").status_code == 401
        c.post("/login", data={"username": "staff", "password": "pw-1"})
        assert c.get("/config").status_code == 200


# -- docs, hosts -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_the_api_docs_are_off_by_default(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_api_schema_when_switched_on_needs_the_token(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    with _client(tiny_assistant, tmp_path, api_docs=True, api_token=TOKEN) as c:
        assert c.get("/openapi.json").status_code == 401
        schema = c.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
        assert schema.status_code == 200
        assert "/api/ask" in schema.json()["paths"]
        assert c.get("/docs").status_code == 404  # its page would load a CDN's scripts


def test_other_host_headers_are_refused(tiny_assistant: Assistant, tmp_path: Path) -> None:
    with TestClient(
        create_app(Settings(data_dir=tmp_path), tiny_assistant), base_url="http://127.0.0.1:7860"
    ) as c:
        assert c.get("/api/health").status_code in (200, 503)
        assert c.get("/api/health", headers={"Host": "localhost:7860"}).status_code != 400
        assert c.get("/api/health", headers={"Host": "rebound.example"}).status_code == 400


def test_hardening_settings_from_the_environment() -> None:
    env = {
        "ASSISTANT_FRAME_ANCESTORS": "https://intranet.example.nhs.uk",
        "ASSISTANT_ALLOWED_HOSTS": "assistant.example.nhs.uk, *.trust.nhs.uk",
        "ASSISTANT_TRUSTED_PROXIES": "10.0.0.5,10.1.0.0/16",
        "ASSISTANT_API_DOCS": "on",
    }
    s = Settings.from_env(env)
    assert s.frame_ancestors == ("https://intranet.example.nhs.uk",)
    assert s.served_hosts() == ["assistant.example.nhs.uk", "*.trust.nhs.uk"]
    assert s.trusted_proxies == ("10.0.0.5", "10.1.0.0/16")
    assert s.api_docs is True
    defaults = Settings()
    assert defaults.served_hosts() == ["127.0.0.1", "localhost"]
    assert defaults.trusted_proxies == ()
    assert defaults.api_docs is False
    assert "assistant.lan" in Settings(host="assistant.lan").served_hosts()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ASSISTANT_FRAME_ANCESTORS", "intranet.example.nhs.uk/page"),
        ("ASSISTANT_ALLOWED_HOSTS", "https://assistant.example.nhs.uk"),
        ("ASSISTANT_TRUSTED_PROXIES", "proxy.example"),
    ],
)
def test_bad_hardening_settings_are_clear_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


# -- logs ------------------------------------------------------------------------------------


class _Body(BaseModel):
    rating: int


def _validation_error() -> ValidationError:
    try:
        _Body.model_validate({"rating": SECRET})
    except ValidationError as err:
        return err
    raise AssertionError("no error")


def _logged(record_error: BaseException | None, message: str) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(QuestionFreeLogs())
    logger = logging.getLogger("test-hardening")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        if record_error is None:
            logger.error(message)
        else:
            try:
                raise record_error
            except BaseException:
                logger.exception(message)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_the_log_filter_hides_input_values_and_tracebacks() -> None:
    err = _validation_error()
    assert SECRET in str(err)  # what pydantic would have logged
    text = _logged(None, f"bad request: {err}")
    assert "Zanzibar" not in text
    assert "input_value=<hidden>" in text
    text = _logged(err, "Exception in ASGI application")
    assert "Zanzibar" not in text
    assert "Traceback" not in text
    assert text.strip() == "Exception in ASGI application (ValidationError)"


def test_gradios_printed_tracebacks_become_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import gradio.queueing
    import gradio.route_utils
    import gradio.routes

    for module in (gradio.queueing, gradio.routes, gradio.route_utils):  # put back afterwards
        monkeypatch.setattr(module, "traceback", module.traceback)
    for name in ("", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            monkeypatch.setattr(target, "filters", list(target.filters))
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    quiet_logs()
    try:
        raise _validation_error()
    except ValidationError:
        gradio.queueing.traceback.print_exc()
    assert stderr.getvalue() == ""
    assert "ValidationError" in caplog.text
    assert "Zanzibar" not in caplog.text
    assert gradio.queueing.traceback.format_exc  # the rest of the module as it was


# -- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "see https://example.org/page or www.example.org",
        "mail someone@example.org",
        "![pixel](https://tracker.example/p.png)",
        "<img src=https://tracker.example/p.png>",
        r"a \ backslash, [ref][1] and http\://",
    ],
)
def test_md_text_makes_no_link_and_plain_text_reverses_it(text: str) -> None:
    shown = md_text(text)
    assert "://" not in shown.replace("\\://", "")
    assert "www." not in shown
    assert "<img" not in shown
    assert plain_text(shown) == text


def test_the_users_question_is_shown_as_text() -> None:
    with gr.Blocks():
        chatbot = text_user_messages(gr.Chatbot())
    question = "What is ![x](https://tracker.example/p.png) <b>commissioning</b>?"
    history = [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "**[1]** an answer"},
    ]
    page = chatbot.postprocess(history)
    user, assistant = page.root
    assert user.content[0].text == md_text(question)  # type: ignore[union-attr]
    assert assistant.content[0].text == "**[1]** an answer"  # type: ignore[union-attr]
    back = chatbot.preprocess(page)
    assert back[0]["content"][0]["text"] == question  # the conversation as the user wrote it


# -- zero-width characters -------------------------------------------------------------------


@pytest.mark.parametrize("mark", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])
def test_zero_width_characters_are_removed_not_spaced(mark: str) -> None:
    assert clean_question(f"What is commis{mark}sioning?", 100) == "What is commissioning?"
    assert clean_line(f"commis{mark}sioning cycle") == "commissioning cycle"


def test_a_question_with_zero_width_characters_gets_the_same_answer(
    tiny_assistant: Assistant,
) -> None:
    plain = tiny_assistant.ask("What do the guides say about commissioning?")
    marked = tiny_assistant.ask("What do the gu\u200bides say about commis\u200bsion\u00ading?")
    assert marked.answer == plain.answer
    assert marked.confidence == plain.confidence


# -- error messages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "public"),
    [
        (
            "no index in /srv/assistant/index yet: build it with `assistant index`",
            "no index in [a path on the server] yet: build it with `assistant index`",
        ),
        (
            "the index in /tmp/a/index is damaged (/tmp/a/index/CURRENT: bad JSON)",
            "the index in [a path on the server] is damaged ([a path on the server]: bad JSON)",
        ),
        ("cannot read C:\\data\\calibration.json", "cannot read [a path on the server]"),
        ("the server at http://127.0.0.1:8000/v1 failed", None),
        ("send it to /api/feedback instead", None),
    ],
)
def test_error_messages_for_clients_hold_no_server_paths(message: str, public: str | None) -> None:
    assert public_message(IndexNotBuiltError(message)) == (public or message)


def test_an_api_error_names_no_folder_of_the_server(tmp_path: Path) -> None:
    empty = tmp_path / "srv-index-folder"
    empty.mkdir()
    settings = Settings(data_dir=tmp_path / "data", index_dir=empty, allowed_hosts=HOSTS)
    with TestClient(create_app(settings, None)) as c:
        health = c.get("/api/health")
        ask = c.post("/api/ask", json={"question": "What is commissioning?"})
    assert health.status_code == 503
    assert ask.status_code == 503
    for body in (health.text, ask.text):
        assert "srv-index-folder" not in body
        assert "no index in [a path on the server]" in body
