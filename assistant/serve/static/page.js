// The chat page's answers (assistant/serve/markup.py puts this in the page's <head>): Gradio
// re-renders messages, so the handlers are delegated from the document. A marker opens its
// answer's Sources block if closed, scrolls to the source and focuses it; the copy button puts
// the answer's plain text with numbered sources (from the hidden span after it) on the clipboard.
(function () {
  function bot(node) { return node.closest('[data-testid="bot"]'); }
  function sourcesToggle(link) {
    // the answer's Sources block is the next bot message with a title: its title opens it
    const bots = Array.from(document.querySelectorAll('[data-testid="bot"]'));
    const at = bots.indexOf(bot(link));
    for (let i = at + 1; i < bots.length; i++) {
      const title = Array.from(bots[i].querySelectorAll("button, [role=button], summary"))
        .find(function (b) { return /^\s*Sources \(/.test(b.textContent || ""); });
      if (title) return title;
    }
    return null;
  }
  function show(id, tries) {
    const target = document.getElementById(id);
    if (target && target.offsetParent !== null) {
      document.querySelectorAll(".source-target").forEach(function (n) {
        n.classList.remove("source-target");
      });
      target.classList.add("source-target");
      target.scrollIntoView({ block: "start" });
      target.focus({ preventScroll: true });
      return;
    }
    if (tries > 0) requestAnimationFrame(function () { show(id, tries - 1); });
  }
  function copy(button) {
    const held = bot(button) && bot(button).querySelector(".copy-text");
    const text = held ? held.textContent : "";
    const label = button.textContent;
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 2000);
    });
  }
  document.addEventListener("click", function (event) {
    const node = event.target instanceof Element ? event.target : null;
    const button = node && node.closest("button.copy-answer");
    if (button) { event.preventDefault(); event.stopPropagation(); copy(button); return; }
    const link = node && node.closest('a[href^="#src-"]');
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const id = link.getAttribute("href").slice(1);
    const target = document.getElementById(id);
    if (!target || target.offsetParent === null) {
      const toggle = sourcesToggle(link);
      if (toggle) toggle.click();
    }
    show(id, 120);
  }, true);
})();
