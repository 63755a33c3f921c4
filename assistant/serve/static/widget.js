/*
 * Commissioning guidance assistant: the embeddable chat widget.
 *
 * Site owners add one tag to a page:
 *   <script src="(assistant address)/widget.js" data-title="Commissioning guidance" defer>
 *   </script>
 * Optional attributes: data-title (panel title), data-key (a widget key, sent as "X-Widget-Key";
 * the server accepts it only from the origins it is bound to), data-token (deprecated: the API
 * token, sent as "Authorization: Bearer ...", readable by anyone who views the page; ignored when
 * data-key is given).
 *
 * Plain ES2017, no dependencies, no build step. Every request goes to the origin this script was
 * loaded from and nowhere else. Everything lives in one open shadow root, so the page's styles do
 * not reach the widget and the widget's styles do not reach the page. Text from the server or the
 * user is only ever put in the page through textContent and text nodes, never parsed as markup.
 */
(function () {
  "use strict";

  const GLOBAL = "CommissioningAssistantWidget";
  const HOST_ID = "commissioning-assistant-widget";
  const VERSION = "1";
  const MAX_TURNS = 10; // conversation turns (questions and answers) sent as history
  const TIMEOUT_MS = 60000;

  // captured synchronously: document.currentScript is null once this first run is over
  const script = document.currentScript;

  function alreadyLoaded() {
    const existing = window[GLOBAL];
    return Boolean(
      (existing && typeof existing === "object" && existing.version) ||
        document.getElementById(HOST_ID)
    );
  }

  function scriptOrigin(el) {
    try {
      if (el && el.src) return new URL(el.src, document.baseURI).origin;
    } catch (err) {
      /* fall through */
    }
    return null;
  }

  function str(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null && text !== "") node.textContent = String(text);
    return node;
  }

  const STYLE = [
    ":host { all: initial; }",
    ".caw-root, .caw-root * { box-sizing: border-box; }",
    ".caw-root { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif;",
    "  font-size: 15px; line-height: 1.45; color: #212b32; }",
    ".caw-launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;",
    "  display: inline-flex; align-items: center; gap: 8px; min-height: 48px; padding: 10px 18px;",
    "  border: 2px solid #003087; border-radius: 24px; background: #005eb8; color: #ffffff;",
    "  font: inherit; font-weight: 600; cursor: pointer;",
    "  box-shadow: 0 2px 8px rgba(0, 0, 0, 0.3); }",
    ".caw-launcher:hover { background: #003087; }",
    ".caw-launcher-icon { font-size: 18px; line-height: 1; }",
    ".caw-panel { position: fixed; right: 20px; bottom: 84px; z-index: 2147483000;",
    "  width: min(420px, calc(100vw - 40px)); height: min(640px, calc(100vh - 110px));",
    "  display: flex; flex-direction: column; background: #ffffff; color: #212b32;",
    "  border: 1px solid #768692; border-radius: 10px; overflow: hidden;",
    "  box-shadow: 0 6px 24px rgba(0, 0, 0, 0.3); }",
    ".caw-panel[hidden] { display: none; }",
    ".caw-header { display: flex; align-items: center; gap: 8px; padding: 10px 12px;",
    "  background: #005eb8; color: #ffffff; }",
    ".caw-title { flex: 1; margin: 0; font-size: 17px; font-weight: 700; color: #ffffff; }",
    ".caw-header button { font: inherit; font-size: 14px; color: #ffffff; background: transparent;",
    "  border: 1px solid #ffffff; border-radius: 6px; padding: 4px 10px; cursor: pointer; }",
    ".caw-header button:hover { background: #003087; }",
    ".caw-close { font-size: 18px; line-height: 1; }",
    ".caw-note { margin: 0; padding: 8px 12px; font-size: 13px; background: #fff9e0;",
    "  color: #3d2b00; border-bottom: 1px solid #d8c77a; }",
    ".caw-messages { flex: 1; overflow-y: auto; padding: 12px; background: #f0f4f5; }",
    ".caw-empty { margin: 0; color: #4c6272; font-size: 14px; }",
    ".caw-msg { margin: 0 0 12px; padding: 10px 12px; border-radius: 8px; background: #ffffff;",
    "  border: 1px solid #d8dde0; overflow-wrap: anywhere; }",
    ".caw-msg p { margin: 0 0 6px; white-space: pre-wrap; }",
    ".caw-msg p:last-child { margin-bottom: 0; }",
    ".caw-user { margin-left: 40px; background: #e8f1fa; border-color: #9ec2e6; }",
    ".caw-answer { margin-right: 16px; }",
    ".caw-declined { margin-right: 16px; background: #fff4e5; border: 2px dashed #b35c00; }",
    ".caw-declined-heading { display: block; margin: 0 0 6px; font-size: 15px; color: #7a3e00; }",
    ".caw-error { background: #fdecea; border: 2px solid #d5281b; color: #6b0f08; }",
    ".caw-error-heading { display: block; margin: 0 0 4px; font-size: 15px; }",
    ".caw-thinking { color: #4c6272; font-style: italic; }",
    ".caw-ref { font-size: 0.8em; vertical-align: super; color: #003087; font-weight: 600; }",
    ".caw-notice { margin: 8px 0 0; padding: 6px 8px; font-size: 13px; background: #fff9e0;",
    "  border-left: 4px solid #b38f00; color: #3d2b00; white-space: pre-wrap; }",
    ".caw-details { margin-top: 8px; }",
    ".caw-details > summary { cursor: pointer; font-weight: 600; color: #003087; }",
    ".caw-list { margin: 6px 0 0; padding: 0; list-style: none; }",
    ".caw-source { margin: 0 0 10px; padding: 8px; background: #f8fafb;",
    "  border: 1px solid #d8dde0; border-radius: 6px; }",
    ".caw-source-head { font-weight: 600; }",
    ".caw-age { font-size: 13px; color: #4c6272; }",
    ".caw-age-note { font-size: 13px; color: #4c6272; font-style: italic; }",
    ".caw-passage { margin: 6px 0 0; padding: 0 0 0 8px; border-left: 3px solid #aeb7bd;",
    "  white-space: pre-wrap; font-size: 14px; }",
    ".caw-passage mark { background: #ffeb3b; color: #212b32; padding: 0 1px; }",
    ".caw-form { display: flex; flex-direction: column; gap: 6px; padding: 10px 12px;",
    "  border-top: 1px solid #d8dde0; background: #ffffff; }",
    ".caw-label { font-size: 13px; font-weight: 600; }",
    ".caw-row { display: flex; gap: 8px; align-items: flex-end; }",
    ".caw-input { flex: 1; min-height: 44px; max-height: 140px; resize: vertical; padding: 8px;",
    "  font: inherit; color: #212b32; background: #ffffff; border: 2px solid #4c6272;",
    "  border-radius: 6px; }",
    ".caw-send { min-height: 44px; padding: 8px 16px; font: inherit; font-weight: 600;",
    "  color: #ffffff; background: #007f3b; border: 2px solid #00401e; border-radius: 6px;",
    "  cursor: pointer; }",
    ".caw-send:disabled { background: #768692; border-color: #4c6272; cursor: wait; }",
    ".caw-hint { font-size: 12px; color: #4c6272; }",
    "button:focus-visible, textarea:focus-visible, summary:focus-visible, a:focus-visible {",
    "  outline: 3px solid #ffb81c; outline-offset: 2px; box-shadow: 0 0 0 5px #212b32; }",
    // the conversation fills the panel, which clips: its ring is drawn inside it
    ".caw-messages:focus-visible { outline: 3px solid #005eb8; outline-offset: -3px; }",
    ".caw-visually-hidden { position: absolute; width: 1px; height: 1px; margin: -1px;",
    "  padding: 0; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }",
    "@media (prefers-reduced-motion: no-preference) {",
    "  .caw-launcher { transition: background 0.15s; } }",
  ].join("\n");

  // How an answer's display looks: linked markers, the source they lead to, the copy button.
  const ANSWER_STYLE = [
    "a.caw-ref { color: #003087; font-weight: 600; text-decoration: underline; }",
    ".caw-answer-text ul { margin: 0 0 6px; padding-left: 20px; }",
    ".caw-answer-text li { margin: 0 0 2px; }",
    ".caw-source-target { outline: 3px solid #005eb8; outline-offset: 2px; }",
    ".caw-copy { margin-top: 8px; padding: 4px 10px; font: inherit; font-size: 13px;",
    "  color: #003087; background: #ffffff; border: 1px solid #003087; border-radius: 6px;",
    "  cursor: pointer; }",
  ].join("\n");

  // Text with its [n] citation markers kept, each marker in its own span. Only the numbers of
  // this answer's citations are markers, and not after "]": "[ref][1]" in a document is text.
  function appendWithMarkers(parent, text, cited) {
    const parts = str(text).split(/(\[\d+\])/);
    for (let i = 0; i < parts.length; i++) {
      if (!parts[i]) continue;
      const n = i % 2 === 1 ? Number(parts[i].slice(1, -1)) : NaN;
      const afterBracket = i > 0 && /\]$/.test(parts[i - 1]);
      if (cited.indexOf(n) >= 0 && !afterBracket) {
        parent.appendChild(el("span", "caw-ref", parts[i]));
      } else parent.appendChild(document.createTextNode(parts[i]));
    }
  }

  // withMarkers: the citation numbers to mark (an array), or false for plain text
  function appendParagraphs(parent, text, withMarkers) {
    const paragraphs = str(text).split(/\n{2,}/);
    for (let i = 0; i < paragraphs.length; i++) {
      const body = paragraphs[i].trim();
      if (!body) continue;
      const p = el("p");
      if (withMarkers) appendWithMarkers(p, body, withMarkers);
      else p.textContent = body;
      parent.appendChild(p);
    }
  }

  // Where the cited sentences sit in the passage: sorted, non-overlapping [start, end) ranges.
  function quoteRanges(text, quotes) {
    const ranges = [];
    for (let i = 0; i < quotes.length; i++) {
      const q = str(quotes[i]).trim();
      if (!q) continue;
      let from = 0;
      let at;
      while ((at = text.indexOf(q, from)) !== -1) {
        ranges.push([at, at + q.length]);
        from = at + q.length;
      }
    }
    ranges.sort(function (a, b) {
      return a[0] - b[0] || b[1] - a[1];
    });
    const merged = [];
    for (let j = 0; j < ranges.length; j++) {
      const last = merged[merged.length - 1];
      if (last && ranges[j][0] < last[1]) last[1] = Math.max(last[1], ranges[j][1]);
      else merged.push([ranges[j][0], ranges[j][1]]);
    }
    return merged;
  }

  // The passage as text nodes, with each cited sentence in a <mark>.
  function passageBlock(text, quotes) {
    const block = el("blockquote", "caw-passage");
    text = str(text);
    const ranges = quoteRanges(text, quotes || []);
    let pos = 0;
    for (let i = 0; i < ranges.length; i++) {
      if (ranges[i][0] > pos) {
        block.appendChild(document.createTextNode(text.slice(pos, ranges[i][0])));
      }
      block.appendChild(el("mark", "", text.slice(ranges[i][0], ranges[i][1])));
      pos = ranges[i][1];
    }
    if (pos < text.length) block.appendChild(document.createTextNode(text.slice(pos)));
    return block;
  }

  function heading(title, section, n) {
    let head = (n !== undefined ? "[" + str(n) + "] " : "") + (str(title) || "Untitled document");
    if (str(section)) head += " — " + str(section);
    return el("div", "caw-source-head", head);
  }

  function ageLine(item) {
    const era = str(item.era);
    const historical = str(item.status) === "historical";
    let line = era ? "Source from " + era : "Date of source not recorded";
    if (historical) line += " — historical guidance";
    return el("div", "caw-age", line);
  }

  function sourceItem(c) {
    const li = el("li", "caw-source");
    li.setAttribute("data-n", str(c.n));
    li.tabIndex = -1;
    li.appendChild(heading(c.title, c.section, c.n));
    li.appendChild(ageLine(c));
    if (str(c.note)) li.appendChild(el("div", "caw-age-note", c.note));
    const quotes = Array.isArray(c.quotes) && c.quotes.length ? c.quotes : [c.quote];
    li.appendChild(passageBlock(str(c.passage) || str(c.quote), quotes));
    return li;
  }

  function closestItem(p) {
    const li = el("li", "caw-source");
    li.appendChild(heading(p.title, p.section));
    li.appendChild(ageLine(p));
    li.appendChild(passageBlock(p.text, []));
    return li;
  }

  function detailsBlock(className, summary, items, render) {
    const details = el("details", "caw-details " + className);
    details.appendChild(el("summary", "", summary + " (" + items.length + ")"));
    const list = el("ol", "caw-list");
    for (let i = 0; i < items.length; i++) {
      if (items[i] && typeof items[i] === "object") list.appendChild(render(items[i]));
    }
    details.appendChild(list);
    return details;
  }

  // The answer text without the notices that the server also appends to it.
  function answerBody(answer, notices) {
    let body = str(answer);
    for (let i = 0; i < notices.length; i++) {
      const notice = notices[i].trim();
      if (notice && body.trim().endsWith(notice)) {
        body = body.trim().slice(0, body.trim().length - notice.length);
      }
    }
    return body.trim() || str(answer);
  }

  // A marker: a link to its source in the answer's Sources block, which it opens.
  function markerLink(n, sources) {
    const link = el("a", "caw-ref", "[" + n + "]");
    link.href = "#";
    link.setAttribute("aria-label", "Source " + n);
    link.addEventListener("click", function (event) {
      event.preventDefault();
      const item = sources && sources.querySelector('li[data-n="' + n + '"]');
      if (!item) return;
      sources.open = true;
      const marked = sources.querySelectorAll(".caw-source-target");
      for (let i = 0; i < marked.length; i++) marked[i].classList.remove("caw-source-target");
      item.classList.add("caw-source-target");
      item.scrollIntoView({ block: "nearest" });
      item.focus({ preventScroll: true });
    });
    return link;
  }

  // Parts of a line: text, then its markers (one per run of sentences from a source).
  function appendParts(parent, parts, sources) {
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] && typeof parts[i] === "object" ? parts[i] : {};
      const text = str(part.text);
      const cite = Array.isArray(part.cite) ? part.cite : [];
      const sep = i > 0 && !/^[.,;:!?)\]]/.test(text) ? " " : "";
      if (sep + text) parent.appendChild(document.createTextNode(sep + text));
      for (let j = 0; j < cite.length; j++) {
        if (j === 0 && text) parent.appendChild(document.createTextNode(" "));
        parent.appendChild(markerLink(Number(cite[j]), sources));
      }
    }
  }

  // The server's display of the answer (paragraphs and lists, see assistant/serve/display.py).
  function appendDisplay(parent, blocks, sources) {
    for (let i = 0; i < blocks.length; i++) {
      const block = blocks[i] && typeof blocks[i] === "object" ? blocks[i] : {};
      if (block.type === "list" && Array.isArray(block.items)) {
        const list = el("ul");
        for (let j = 0; j < block.items.length; j++) {
          const li = el("li");
          appendParts(li, Array.isArray(block.items[j]) ? block.items[j] : [], sources);
          list.appendChild(li);
        }
        parent.appendChild(list);
      } else if (Array.isArray(block.parts)) {
        const p = el("p");
        appendParts(p, block.parts, sources);
        parent.appendChild(p);
      }
    }
  }

  function copyButton(text) {
    const button = el("button", "caw-copy", "Copy answer with sources");
    button.type = "button";
    button.addEventListener("click", function () {
      const done = function (label) {
        button.textContent = label;
        setTimeout(function () {
          button.textContent = "Copy answer with sources";
        }, 2000);
      };
      if (!navigator.clipboard) return done("Copying is not available here");
      navigator.clipboard.writeText(text).then(
        function () { done("Copied"); },
        function () { done("Could not copy"); }
      );
    });
    return button;
  }

  function renderAnswer(data) {
    const notices = Array.isArray(data.notices) ? data.notices.map(str).filter(Boolean) : [];
    const refused = data.refused === true;
    const display = data.display && typeof data.display === "object" ? data.display : null;
    const msg = el("div", "caw-msg " + (refused ? "caw-declined" : "caw-answer"));
    if (refused) {
      msg.appendChild(el("strong", "caw-declined-heading", "Not covered by the guidance"));
    }
    const citations = Array.isArray(data.citations) ? data.citations : [];
    const sources =
      !refused && citations.length
        ? detailsBlock("caw-sources", "Sources", citations, sourceItem)
        : null;
    const text = el("div", "caw-answer-text");
    if (display && Array.isArray(display.blocks)) {
      appendDisplay(text, display.blocks, sources);
    } else {
      const cited = citations.map(function (c) {
        return c && typeof c === "object" ? Number(c.n) : NaN;
      });
      appendParagraphs(text, answerBody(data.answer, notices), cited);
    }
    msg.appendChild(text);
    for (let i = 0; i < notices.length; i++) msg.appendChild(el("p", "caw-notice", notices[i]));
    if (sources) msg.appendChild(sources);
    const closest = Array.isArray(data.closest) ? data.closest : [];
    if (refused && closest.length) {
      const summary = "Closest passages in the guidance";
      msg.appendChild(detailsBlock("caw-closest", summary, closest, closestItem));
    }
    if (!refused && display && typeof display.copy === "string") {
      msg.appendChild(copyButton(display.copy));
    }
    return msg;
  }


  // Reads the server's stream of JSON lines; calls onText with the text written so far and
  // returns the last event (the answer, or an error).
  async function readStream(response, onText) {
    let text = "";
    let last = null;
    const handle = function (line) {
      if (!line.trim()) return;
      let event = null;
      try {
        event = JSON.parse(line);
      } catch (err) {
        return;
      }
      if (event && event.type === "delta" && typeof event.text === "string") {
        text += event.text;
        onText(text);
      } else if (event) {
        last = event;
      }
    };
    if (!response.body || typeof response.body.getReader !== "function") {
      (await response.text()).split("\n").forEach(handle);
      return last;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buffered += decoder.decode(chunk.value, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop();
      lines.forEach(handle);
    }
    handle(buffered + decoder.decode());
    return last;
  }

  function renderError(title, detail) {
    const msg = el("div", "caw-msg caw-error");
    msg.setAttribute("role", "alert");
    msg.appendChild(el("strong", "caw-error-heading", title));
    msg.appendChild(el("p", "", detail));
    return msg;
  }

  function statusMessage(status, data) {
    if (data && typeof data === "object" && typeof data.error === "string" && data.error) {
      return data.error;
    }
    if (status === 401 || status === 403) return "This page is not allowed to use the assistant.";
    if (status === 429) return "Too many questions at once: please wait a moment and try again.";
    if (status === 503) return "The assistant is not ready yet: please try again later.";
    return "The assistant could not answer (HTTP " + status + ").";
  }

  function Widget(origin, options) {
    this.origin = origin;
    this.title = options.title;
    this.token = options.token;
    this.key = options.key;
    this.history = []; // [{role, content}], for the page's lifetime
    this.busy = false;
    this.generation = 0; // bumped by "New chat", so a late reply to a cleared chat is dropped
    this.controller = null;
  }

  Widget.prototype.mount = function () {
    const self = this;
    const host = document.createElement("div");
    host.id = HOST_ID;
    const shadow = host.attachShadow({ mode: "open" });
    this.host = host;
    this.shadow = shadow;

    const style = document.createElement("style");
    style.textContent = STYLE + "\n" + ANSWER_STYLE;
    shadow.appendChild(style);

    const root = el("div", "caw-root");
    shadow.appendChild(root);

    const panelId = "caw-panel";
    const launcher = el("button", "caw-launcher");
    launcher.type = "button";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", panelId);
    launcher.setAttribute("aria-label", "Open " + this.title + " chat");
    const icon = el("span", "caw-launcher-icon", "?");
    icon.setAttribute("aria-hidden", "true");
    launcher.appendChild(icon);
    launcher.appendChild(el("span", "caw-launcher-text", "Ask " + this.title));
    root.appendChild(launcher);

    const panel = el("div", "caw-panel");
    panel.id = panelId;
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", this.title);

    const header = el("div", "caw-header");
    header.appendChild(el("h2", "caw-title", this.title));
    const newChat = el("button", "caw-new", "New chat");
    newChat.type = "button";
    header.appendChild(newChat);
    const close = el("button", "caw-close", "×");
    close.type = "button";
    close.setAttribute("aria-label", "Close chat");
    header.appendChild(close);
    panel.appendChild(header);

    panel.appendChild(
      el(
        "p",
        "caw-note",
        "This guidance predates the 2013 and 2022 NHS reorganisations: bodies it names, " +
          "such as PCTs and CCGs, no longer exist. Check current arrangements before acting."
      )
    );

    const messages = el("div", "caw-messages");
    messages.setAttribute("role", "log");
    // not live: a streamed answer would be read token by token; the announcer reads it once
    messages.setAttribute("aria-live", "off");
    messages.setAttribute("aria-label", "Conversation");
    messages.tabIndex = 0;
    panel.appendChild(messages);

    const form = el("form", "caw-form");
    form.noValidate = true;
    const inputId = "caw-question";
    const label = el("label", "caw-label", "Your question");
    label.htmlFor = inputId;
    form.appendChild(label);
    const row = el("div", "caw-row");
    const input = el("textarea", "caw-input");
    input.id = inputId;
    input.rows = 2;
    input.setAttribute("aria-describedby", "caw-hint");
    row.appendChild(input);
    const send = el("button", "caw-send", "Send");
    send.type = "submit";
    row.appendChild(send);
    form.appendChild(row);
    const hint = el("div", "caw-hint", "Enter sends; Shift+Enter starts a new line.");
    hint.id = "caw-hint";
    form.appendChild(hint);
    panel.appendChild(form);
    root.appendChild(panel);
    // the finished answer, read once by screen readers (outside the panel: heard when closed)
    const announcer = el("div", "caw-visually-hidden caw-announcer");
    announcer.setAttribute("role", "status");
    announcer.setAttribute("aria-live", "polite");
    announcer.setAttribute("aria-atomic", "true");
    root.appendChild(announcer);

    this.announcer = announcer;
    this.launcher = launcher;
    this.panel = panel;
    this.messages = messages;
    this.input = input;
    this.send = send;
    this.showEmpty();

    launcher.addEventListener("click", function () {
      self.toggle();
    });
    close.addEventListener("click", function () {
      self.close();
    });
    newChat.addEventListener("click", function () {
      self.reset();
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      self.submit();
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        self.submit();
      }
    });
    root.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !self.panel.hidden) {
        event.preventDefault();
        self.close();
      }
    });

    document.body.appendChild(host);
  };

  Widget.prototype.open = function () {
    this.panel.hidden = false;
    this.launcher.setAttribute("aria-expanded", "true");
    this.launcher.setAttribute("aria-label", "Close " + this.title + " chat");
    this.input.focus();
  };

  Widget.prototype.close = function () {
    this.panel.hidden = true;
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcher.setAttribute("aria-label", "Open " + this.title + " chat");
    this.launcher.focus();
  };

  Widget.prototype.toggle = function () {
    if (this.panel.hidden) this.open();
    else this.close();
  };

  Widget.prototype.showEmpty = function () {
    this.messages.appendChild(
      el("p", "caw-empty", "Ask a question about commissioning; answers cite the guidance.")
    );
  };

  // Append a message; a reply is scrolled to its start (answers can be long), others to the end.
  Widget.prototype.add = function (node, isReply) {
    const list = this.messages;
    const empty = list.querySelector(".caw-empty");
    if (empty) empty.remove();
    list.appendChild(node);
    if (isReply) list.scrollTop = Math.max(0, node.offsetTop - list.offsetTop - 8);
    else list.scrollTop = list.scrollHeight;
    return node;
  };

  // Tell screen readers a finished reply: its text, without the collapsed sources.
  Widget.prototype.announce = function (node) {
    const parts = [];
    for (let i = 0; i < node.children.length; i++) {
      if (node.children[i].tagName !== "DETAILS") parts.push(node.children[i].textContent);
    }
    this.announcer.textContent = parts.join(" ").replace(/\s+/g, " ").trim();
  };

  Widget.prototype.setBusy = function (busy) {
    this.busy = busy;
    this.send.disabled = busy;
  };

  Widget.prototype.reset = function () {
    this.generation += 1;
    if (this.controller) this.controller.abort();
    this.controller = null;
    this.history = [];
    while (this.messages.firstChild) this.messages.removeChild(this.messages.firstChild);
    this.announcer.textContent = "";
    this.showEmpty();
    this.setBusy(false);
    this.input.value = "";
    this.input.focus();
  };

  Widget.prototype.submit = function () {
    const question = this.input.value.trim();
    if (this.busy || !question) return;
    this.input.value = "";
    this.ask(question).catch(function () {
      /* ask() reports its own failures in the panel */
    });
  };

  Widget.prototype.ask = async function (question) {
    const generation = this.generation;
    const user = el("div", "caw-msg caw-user");
    user.appendChild(el("span", "caw-visually-hidden", "You asked: "));
    appendParagraphs(user, question, false);
    this.add(user);
    const thinking = this.add(el("div", "caw-msg caw-thinking", "Thinking…"));
    thinking.setAttribute("role", "status");
    this.setBusy(true);

    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (this.key) headers["X-Widget-Key"] = this.key;
    else if (this.token) headers.Authorization = "Bearer " + this.token;
    const controller = typeof AbortController === "function" ? new AbortController() : null;
    this.controller = controller;
    const timer = controller
      ? setTimeout(function () {
          controller.abort();
        }, TIMEOUT_MS)
      : null;
    const history = this.history.slice(-MAX_TURNS);
    let reply;
    try {
      const response = await fetch(this.origin + "/api/ask/stream", {
        method: "POST",
        mode: "cors",
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "origin",
        headers: headers,
        body: JSON.stringify({ question: question, history: history }),
        signal: controller ? controller.signal : undefined,
      });
      if (!response.ok) {
        let data = null;
        try {
          data = await response.json();
        } catch (err) {
          data = null;
        }
        reply = { error: statusMessage(response.status, data), reason: data && data.reason };
      } else {
        const self = this;
        const event = await readStream(response, function (text) {
          // a chat model writes the answer: show it as it comes (replaced by the final answer)
          if (generation !== self.generation) return;
          thinking.classList.add("caw-streaming");
          thinking.removeAttribute("role"); // "Thinking…" was announced; the tokens are not
          thinking.textContent = text;
        });
        if (event && event.type === "answer" && event.answer && typeof event.answer.answer === "string") {
          reply = { data: event.answer };
        } else if (event && event.type === "error") {
          reply = { error: statusMessage(event.status || 500, event), reason: event.reason };
        } else {
          reply = { error: "The assistant sent a reply this page could not read." };
        }
      }
    } catch (err) {
      const why =
        err && err.name === "AbortError"
          ? "no reply within " + TIMEOUT_MS / 1000 + " seconds"
          : "it may be down, or it may not allow pages on " + window.location.origin;
      reply = { unreachable: "The assistant could not be reached from this page (" + why + ")." };
    } finally {
      if (timer) clearTimeout(timer);
    }

    if (generation !== this.generation) return; // the chat was cleared meanwhile
    this.controller = null;
    thinking.remove();
    if (reply.data) {
      this.announce(this.add(renderAnswer(reply.data), true));
      this.history.push({ role: "user", content: question });
      this.history.push({ role: "assistant", content: reply.data.answer });
      this.history = this.history.slice(-MAX_TURNS);
    } else {
      if (reply.unreachable) {
        this.add(renderError("Could not reach the assistant", reply.unreachable), true);
      } else if (reply.reason === "personal_data") {
        // pii: the server names the kinds found; the question comes back to be rephrased
        this.add(renderError("Please remove the personal data", reply.error), true);
      } else {
        this.add(renderError("The assistant could not answer", reply.error), true);
      }
      // not part of the conversation; give the question back to edit or retry
      if (!this.input.value) this.input.value = question;
    }
    this.setBusy(false);
  };

  try {
    if (alreadyLoaded()) return;
    const origin = scriptOrigin(script);
    if (!origin || origin === "null") {
      if (window.console) {
        console.warn("commissioning assistant widget: cannot tell where it was loaded from");
      }
      return;
    }
    const widget = new Widget(origin, {
      title: str(script.getAttribute("data-title")).trim() || "Commissioning guidance",
      token: str(script.getAttribute("data-token")).trim(),
      key: str(script.getAttribute("data-key")).trim(),
    });
    const api = {
      version: VERSION,
      origin: origin,
      open: function () {
        if (widget.panel) widget.open();
      },
      close: function () {
        if (widget.panel) widget.close();
      },
    };
    Object.defineProperty(window, GLOBAL, { value: Object.freeze(api), configurable: false });
    const start = function () {
      try {
        if (!document.getElementById(HOST_ID)) widget.mount();
      } catch (err) {
        if (window.console) console.error("commissioning assistant widget:", err);
      }
    };
    if (document.body) start();
    else document.addEventListener("DOMContentLoaded", start);
  } catch (err) {
    if (window.console) console.error("commissioning assistant widget:", err);
  }
})();
