"""What the chat page needs for WCAG 2.2 AA beyond Gradio's options and ``UI_CSS``.

Gradio 6.31 leaves three things a page option cannot reach; :data:`A11Y_HEAD`, a small script in
the page head (``mount_gradio_app(head=...)``, allowed by the page's CSP), mends them:

- the collapsible Sources title is a ``role="button"`` holding a second, nameless arrow button
  (axe: nested-interactive, button-name, target-size): the arrow is made ``inert`` (clicks reach
  the title, which toggles), and the title gets ``aria-expanded``;
- the conversation is a polite ``role="log"``, so a screen reader would read every streamed
  token: it is set to ``aria-live="off"``, and the finished answer is put once in a polite live
  region of its own, ``#answer-announcer`` (:data:`ANNOUNCER_ID`), when the question box's Ask
  button is back (it is a Stop button while the answer streams).
"""

from __future__ import annotations

__all__ = ["A11Y_HEAD", "ANNOUNCER_ID"]

ANNOUNCER_ID = "answer-announcer"

#: the script (see the module docstring); ``answer-announcer`` is :data:`ANNOUNCER_ID`
A11Y_HEAD = r"""<script>
(function () {
  "use strict";
  var busy = false, said = "";
  function region() {
    var r = document.getElementById("answer-announcer");
    if (!r && document.body) {
      r = document.createElement("div");
      r.id = "answer-announcer";
      r.className = "sr-only";
      r.setAttribute("role", "status");
      r.setAttribute("aria-live", "polite");
      r.setAttribute("aria-atomic", "true");
      document.body.appendChild(r);
    }
    return r;
  }
  function lastAnswer() {
    var bots = document.querySelectorAll('[role="log"] [data-testid="bot"]');
    for (var i = bots.length - 1; i >= 0; i--) {
      if (!bots[i].querySelector(".thought-group") && !bots[i].closest(".thought-group")) {
        // the answer without its buttons ("Copy answer with sources") or their hidden text
        var copy = bots[i].cloneNode(true);
        copy.querySelectorAll("button, .copy-text").forEach(function (n) { n.remove(); });
        return copy.textContent.replace(/\s+/g, " ").trim();
      }
    }
    return "";
  }
  function fix() {
    var logs = document.querySelectorAll('[role="log"]');
    for (var i = 0; i < logs.length; i++) {
      if (logs[i].getAttribute("aria-live") !== "off") logs[i].setAttribute("aria-live", "off");
    }
    var titles = document.querySelectorAll('.title[role="button"]');
    for (var j = 0; j < titles.length; j++) {
      var t = titles[j], open = String(t.classList.contains("expanded"));
      if (t.getAttribute("aria-expanded") !== open) t.setAttribute("aria-expanded", open);
      var arrows = t.querySelectorAll(".arrow");
      for (var k = 0; k < arrows.length; k++) {
        if (!arrows[k].inert) arrows[k].inert = true;
      }
    }
    var r = region();
    if (!r || !logs.length) return;
    var now = !document.querySelector("button.submit-button");
    if (busy && !now) {
      var text = lastAnswer();
      if (text && text !== said) r.textContent = said = text;
    }
    if (!busy && now) said = "";
    busy = now;
  }
  function start() {
    fix();
    new MutationObserver(fix).observe(document.body, {
      childList: true, subtree: true, attributes: true, attributeFilter: ["class"]
    });
  }
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
</script>"""
