"""The staff chat page (Gradio): streamed cited answers, a Sources block, feedback, new chat.

Everything from a document, a question or an answer reaches the page through :func:`md_text`,
which escapes HTML and the Markdown that could make links, images or code, so markup in the
guidance is shown as text and never runs. The only markup on the page is ours: ``<mark>`` around
cited sentences, the wrapper of a declined answer, and (:mod:`assistant.serve.markup`) the
answer's markers, links to their sources, and its copy button. Markers are merged for reading
(:mod:`assistant.serve.display`): one per run of sentences from the same source.

The chat function is public to ``gradio_client`` as ``api_name="chat"``; it returns the answer
message and the sources message (Markdown, as the page shows them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import gradio as gr

from assistant.errors import AssistantError, PersonalDataError
from assistant.pipeline import Assistant
from assistant.privacy import screen
from assistant.records.feedback import FeedbackStore
from assistant.schema import Answer, Citation, Passage, Turn
from assistant.serve.a11y import A11Y_HEAD
from assistant.serve.display import answer_body, display_blocks, display_text, source_key
from assistant.serve.hardening import public_message
from assistant.serve.limits import MAX_TURN_CHARS, MAX_TURNS
from assistant.serve.markup import ANSWERS_HEAD, blocks_markdown, copy_button, md_text, plain_text
from assistant.serve.observe import Observer

__all__ = [
    "EXAMPLES",
    "UI_CSS",
    "UI_HEAD",
    "answer_markdown",
    "build_ui",
    "history_turns",
    "md_text",
    "render_answer",
    "text_user_messages",
]

log = logging.getLogger(__name__)

EXAMPLES = [
    "How many CCGs manage most of the NHS commissioning budget?",
    "What are the four stages of the commissioning cycle?",
    "Is procurement the same as commissioning?",
    "What is Specialised Commissioning?",
]

TITLE = "Commissioning guidance assistant"
INTRO = (
    "Answers from the health and care commissioning guidance, with the passages it used. "
    "The guidance dates from before the 2013 and 2022 NHS reorganisations: each source shows "
    "how old it is. Ask a follow-up question at any point; **New chat** starts again."
)
SOURCES_TITLE = "Sources"
CLOSEST_TITLE = "Closest passages (they do not answer the question)"
DECLINED_HEADING = "Not covered by the guidance"

#: Readable contrast (WCAG AA on white), a visible focus ring, and the declined-answer look.
UI_CSS = """
.declined { border-left: 4px solid #9a3412; background: #fff7ed; color: #1c1917;
            padding: 0.5em 0.75em; border-radius: 4px; }
.declined strong { color: #9a3412; }
mark { background: #fde68a; color: #111827; padding: 0 0.1em; font-size: inherit; }
.age { color: #374151; font-size: 0.92em; }
:focus-visible { outline: 3px solid #1d4ed8 !important; outline-offset: 2px; }
/* Gradio 6.31 fades collapsible blocks (opacity 0.8, twice) and sets them in 12px: the sources
   are what staff check, so they get full contrast and a readable size */
.thought-group .message-content, .thought-group .md { opacity: 1 !important; }
.thought-group .message-content, .thought-group .message-content p { font-size: 14px !important; }
/* WCAG 2.2 AA (see serve/a11y.py): the footer's API link at 4.5:1; the answers' live region
   for screen readers only */
footer .show-api, footer .show-api * { color: #374151 !important; }
.sr-only { position: absolute !important; width: 1px; height: 1px; margin: -1px; padding: 0;
           overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
"""

#: the page head: the accessibility fixes, then the answers' markers and copy buttons
UI_HEAD = A11Y_HEAD + "\n" + ANSWERS_HEAD
_STREAM_STEPS = 12


def _user_text(message: Any, convert: Callable[[str], str]) -> Any:
    """A user message with its text passed through ``convert``; other messages as they are."""
    if not isinstance(message, dict) or message.get("role") != "user":
        return message
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": convert(content)}
    if isinstance(content, list):
        parts = [
            {**p, "text": convert(str(p["text"]))} if isinstance(p, dict) and "text" in p else p
            for p in content
        ]
        return {**message, "content": parts}
    return message


def text_user_messages(chatbot: gr.Chatbot) -> gr.Chatbot:
    """``chatbot`` with the user's own messages shown as text: escaped on the way to the page
    (:func:`md_text`) and turned back on the way in (:func:`plain_text`), so an image or link
    typed into a question is shown, never loaded or followed.

    The instance's methods are wrapped rather than the class subclassed: Gradio writes a ``.pyi``
    stub beside any module that subclasses one of its components."""
    to_page, from_page = chatbot.postprocess, chatbot.preprocess

    def postprocess(value: Any) -> Any:
        if isinstance(value, list):
            value = [_user_text(m, md_text) for m in value]
        return to_page(value)

    def preprocess(payload: Any) -> Any:
        return [_user_text(m, plain_text) for m in from_page(payload)]

    chatbot.postprocess = postprocess  # type: ignore[method-assign]
    chatbot.preprocess = preprocess  # type: ignore[method-assign]
    return chatbot


def highlight(passage: str, quotes: Sequence[str]) -> str:
    """The passage as Markdown text with each cited sentence wrapped in ``<mark>``."""
    spans: list[tuple[int, int]] = []
    for quote in quotes:
        start = passage.find(quote) if quote else -1
        if start >= 0:
            spans.append((start, start + len(quote)))
    out: list[str] = []
    pos = 0
    for start, end in sorted(spans):
        if start < pos:  # overlapping quotes: the earlier mark already covers it
            continue
        out.append(md_text(passage[pos:start]))
        out.append(f"<mark>{md_text(passage[start:end])}</mark>")
        pos = end
    out.append(md_text(passage[pos:]))
    return "".join(out)


def age_line(era: str, status: str, note: str = "") -> str:
    """How old a source is, for the reader: e.g. "Source from before 2013 — historical guidance"."""
    when = f"Source from {era}" if era else "Source date unknown"
    if status == "historical":
        when += " — historical guidance"
    elif status and status != "current":
        when += f" — {status}"
    if note:
        when += f". {note}"
    return f'<span class="age">{md_text(when)}</span>'


def _where(title: str, section: str) -> str:
    return md_text(title + (f" — {section}" if section else ""))


def _citation_block(c: Citation, key: str) -> str:
    """One source, its heading the target of the answer's markers for it."""
    quotes = c.quotes or [c.quote]
    return (
        f'<span id="src-{key}-{c.n}" class="source-head" tabindex="-1">'
        f"**[{c.n}] {_where(c.title, c.section)}**</span>  \n"
        f"{age_line(c.era, c.status, c.note)}\n\n"
        f"{highlight(c.passage, quotes)}"
    )


def _closest_block(p: Passage) -> str:
    ch = p.chunk
    return (
        f"**{_where(ch.doc.title, ch.section)}**  \n"
        f"{age_line(ch.doc.era, ch.doc.status)}\n\n{md_text(ch.text)}"
    )


def sources_markdown(answer: Answer) -> str:
    """The collapsible block under an answer: each citation, or the closest passages."""
    parts: list[str] = []
    if answer.search_query and answer.search_query != answer.question:
        parts.append(f"*Searched for:* {md_text(answer.search_query)}")
    if answer.refused:
        parts += [_closest_block(p) for p in answer.passages[:3]]
    else:
        key = source_key(answer)
        parts += [_citation_block(c, key) for c in sorted(answer.citations, key=lambda c: c.n)]
    return "\n\n---\n\n".join(parts)


def answer_markdown(answer: Answer, text: str | None = None) -> str:
    """The answer message (``text``: the part streamed so far); a declined one looks different.
    The whole answer has one marker per run of sentences from a source, each a link to it."""
    if text is not None:
        body = md_text(text)
    else:
        cited = [c.n for c in answer.citations]
        body = blocks_markdown(display_blocks(answer_body(answer), cited), source_key(answer))
    if answer.refused:
        return f'<div class="declined"><strong>{DECLINED_HEADING}.</strong> {body}</div>'
    if text is None and answer.notices:
        body += "\n\n" + "\n\n".join(f"*{md_text(n)}*" for n in answer.notices)
    if text is None and answer.citations:
        body += "\n\n" + copy_button(answer)
    return body


def render_answer(answer: Answer) -> list[gr.ChatMessage]:
    """The answer and its Sources (or closest passages) as chat messages."""
    messages = [gr.ChatMessage(content=answer_markdown(answer), role="assistant")]
    sources = sources_markdown(answer)
    if sources:
        title = CLOSEST_TITLE if answer.refused else f"{SOURCES_TITLE} ({len(answer.citations)})"
        messages.append(
            gr.ChatMessage(
                content=sources, role="assistant", metadata={"title": title, "status": "done"}
            )
        )
    return messages


def stream_answer(answer: Answer) -> Iterator[list[gr.ChatMessage]]:
    """The answer revealed a few words at a time, then whole with its sources."""
    words = display_text(answer).split(" ")
    step = max(1, len(words) // _STREAM_STEPS)
    for end in range(step, len(words), step):
        partial = " ".join(words[:end])
        yield [gr.ChatMessage(content=answer_markdown(answer, partial), role="assistant")]
    yield render_answer(answer)


def _is_sources(message: Any) -> bool:
    meta = message.get("metadata") if isinstance(message, dict) else None
    return bool(meta and meta.get("title"))


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Gradio may hand back [{"type": "text", "text": ...}]
        return " ".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return ""


def history_turns(history: Sequence[Any]) -> list[Turn]:
    """The conversation as the pipeline wants it: user and answer texts, sources left out; the
    latest :data:`MAX_TURNS` turns, each cut to :data:`MAX_TURN_CHARS` (as the API allows)."""
    turns: list[Turn] = []
    for m in history:
        if not isinstance(m, dict) or _is_sources(m) or m.get("role") not in ("user", "assistant"):
            continue
        text = _content(m)
        if m["role"] == "assistant":
            text = plain_text(text).removeprefix(f"{DECLINED_HEADING}. ")
        if text.strip():
            turns.append(Turn(str(m["role"]), text[:MAX_TURN_CHARS]))
    return turns[-MAX_TURNS:]


def rated_exchange(history: Sequence[Any], index: int) -> tuple[str, str, list[Turn]] | None:
    """For the message at ``index``: (question, answer text, the turns before the question)."""
    if not 0 <= index < len(history):
        return None
    i = index
    while i > 0 and _is_sources(history[i]):  # a rating on the Sources block rates its answer
        i -= 1
    q = i - 1
    while q >= 0 and (not isinstance(history[q], dict) or history[q].get("role") != "user"):
        q -= 1
    if q < 0 or history[i].get("role") != "assistant":
        return None
    answer = plain_text(_content(history[i]))
    return _content(history[q]), answer, history_turns(history[:q])


@dataclass(frozen=True)
class _Handlers:
    """What the page's events call: the chat over ``get()``'s assistant, ratings into ``feedback``.

    Methods, not closures, so Gradio reads their type hints (``gr.LikeData``) as it does a
    function's.
    """

    get: Callable[[], Assistant]
    feedback: FeedbackStore
    #: metrics and events: the page's answers, declines and personal-data refusals
    observer: Observer | None = None

    def chat(self, message: str, history: list[Any]) -> Iterator[list[gr.ChatMessage]]:
        """The answer to ``message`` as it is written, then whole with its sources."""
        streamed = ""
        try:
            for item in self.get().ask_stream(message, history_turns(history)):
                if isinstance(item, Answer):
                    if self.observer is not None:
                        self.observer.answered("page", "ask", item)
                    if streamed:  # the verified answer replaces the text as it was written
                        yield render_answer(item)
                    else:
                        yield from stream_answer(item)
                    return
                streamed += item
                yield [gr.ChatMessage(content=md_text(streamed), role="assistant")]
        except AssistantError as err:
            raise gr.Error(public_message(err), print_exception=False) from None

    def check(self, message: str) -> dict[str, Any]:
        """The question box's validator (pii): a question holding personal data, when the guard
        blocks (``feedback.pii_check``, from the same settings), stays in the box, with what
        was found and a request to rephrase, and never enters the conversation."""
        try:
            screen([message], self.feedback.pii_check)
        except PersonalDataError as err:
            if self.observer is not None:
                self.observer.refused("page", "ask", "personal_data")
            return dict(gr.validate(False, str(err)))
        return dict(gr.validate(True, ""))

    def on_like(
        self, history: list[Any], data: gr.LikeData
    ) -> tuple[dict[str, Any], str, int | None, str]:
        """Store a thumbs up or down; show the comment box, thanks, and the stored row's id."""
        exchange = rated_exchange(history, _index(data.index))
        if exchange is None or data.liked not in (True, False):
            return gr.update(visible=False), "", None, ""
        question, answer, turns = exchange
        try:
            row = self.feedback.add(question, answer, 1 if data.liked else -1, turns)
        except AssistantError as err:
            raise gr.Error(public_message(err), print_exception=False) from None
        thanks = "Thanks: your rating is saved. Add a comment if you like."
        return gr.update(visible=True), thanks, row, ""

    def on_comment(self, row: int | None, text: str) -> tuple[dict[str, Any], str, str]:
        """Add the comment to the rating stored as ``row``; hide the comment box."""
        if row is None or not text.strip():
            return gr.update(), "Rate an answer first, then add a comment.", text
        try:
            self.feedback.comment(row, text)
        except AssistantError as err:
            raise gr.Error(public_message(err), print_exception=False) from None
        return gr.update(visible=False), "Thanks: your comment is saved.", ""


def _on_new_chat() -> tuple[Any, ...]:
    """Empty the conversation, hide the comment box, forget the rating."""
    return [], [], [], gr.update(visible=False), "", None, ""


class _FeedbackWidgets(NamedTuple):
    """The comment box under the chat (hidden until an answer is rated) and the status line."""

    row: gr.Row
    comment: gr.Textbox
    send: gr.Button
    status: gr.Markdown
    rated_id: gr.State


def _chatbot() -> gr.Chatbot:
    chatbot = gr.Chatbot(
        label="Conversation",
        height="68vh",
        latex_delimiters=[],
        feedback_options=("Like", "Dislike"),
        # no "share" (to Hugging Face): it has no accessible name, and nowhere to go on an intranet
        buttons=["copy", "copy_all"],
        placeholder="Ask about who commissions what, commissioning levels, the commissioning "
        "cycle, or procurement versus commissioning.",
    )
    return text_user_messages(chatbot)


def _question_box() -> gr.Textbox:
    return gr.Textbox(
        label="Your question",
        placeholder="Ask a question about commissioning guidance, then press Enter",
        submit_btn="Ask",
        autofocus=True,
    )


def _chat_interface(
    handlers: _Handlers, chatbot: gr.Chatbot, textbox: gr.Textbox
) -> gr.ChatInterface:
    return gr.ChatInterface(
        handlers.chat,
        chatbot=chatbot,
        textbox=textbox,
        api_name="chat",
        api_description="Answer a question (with the earlier turns) from the guidance.",
        examples=EXAMPLES,
        cache_examples=False,
        fill_height=False,
        validator=handlers.check,  # pii: personal data stays out of the conversation
    )


def _feedback_widgets() -> _FeedbackWidgets:
    with gr.Row(visible=False) as row:
        comment = gr.Textbox(label="Comment on this answer (optional)", max_length=2000, scale=4)
        send = gr.Button("Send comment", scale=1)
    status = gr.Markdown(elem_id="feedback-status")
    return _FeedbackWidgets(row, comment, send, status, gr.State(None))


def _wire_feedback(handlers: _Handlers, chatbot: gr.Chatbot, fb: _FeedbackWidgets) -> None:
    """A rating stores a row and opens the comment box; a comment (button or Enter) joins it."""
    chatbot.like(
        handlers.on_like, [chatbot], [fb.row, fb.status, fb.rated_id, fb.comment],
        api_visibility="private",
    )  # fmt: skip
    for event in (fb.send.click, fb.comment.submit):
        event(
            handlers.on_comment, [fb.rated_id, fb.comment], [fb.row, fb.status, fb.comment],
            api_visibility="private",
        )  # fmt: skip


def _wire_new_chat(
    button: gr.Button, interface: gr.ChatInterface, textbox: gr.Textbox, fb: _FeedbackWidgets
) -> None:
    """**New chat** empties the conversation, the question box and the feedback state."""
    button.click(
        _on_new_chat,
        None,
        [interface.chatbot, interface.chatbot_state, interface.chatbot_value, fb.row, fb.status,
         fb.rated_id, textbox],
        api_visibility="private",
        queue=False,
    )  # fmt: skip


def build_ui(
    get: Callable[[], Assistant], feedback: FeedbackStore, observer: Observer | None = None
) -> gr.Blocks:
    """The chat page over ``get()``'s assistant, storing ratings in ``feedback``, telling
    ``observer`` each answer (metrics, events)."""
    handlers = _Handlers(get, feedback, observer)
    page = gr.Blocks(title=TITLE, analytics_enabled=False)
    with page:
        gr.Markdown(f"# {TITLE}\n\n{INTRO}")
        new_chat = gr.Button("New chat", variant="secondary", size="sm")
        chatbot = _chatbot()
        textbox = _question_box()
        interface = _chat_interface(handlers, chatbot, textbox)
        fb = _feedback_widgets()
        _wire_feedback(handlers, chatbot, fb)
        _wire_new_chat(new_chat, interface, textbox, fb)
    return page


def _index(index: Any) -> int:
    """LikeData.index is an int, or [message, part] for messages with several parts."""
    if isinstance(index, list | tuple):
        index = index[0] if index else -1
    try:
        return int(index)
    except (TypeError, ValueError):
        return -1
