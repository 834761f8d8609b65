// The /docs/events page: a copy button on every code block, and the sidebar's search, which
// narrows both the sidebar and the page to the events whose name or summary match.

function wireCopy() {
  for (const block of document.querySelectorAll(".code-block")) {
    const button = block.querySelector("button.copy");
    const code = block.querySelector("code");
    if (!button || !code) continue;
    const what = block.closest("article")?.dataset.event;
    if (what) button.setAttribute("aria-label", `Copy the ${code.className.replace("lang-", "")} code of ${what}`);
    button.hidden = false;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(code.textContent);
        button.textContent = "Copied";
      } catch {
        // no clipboard (an insecure origin): select the text for Ctrl+C instead
        const range = document.createRange();
        range.selectNodeContents(code);
        const selection = getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
}

function wireSearch() {
  const input = document.getElementById("event-search");
  const count = document.getElementById("event-search-count");
  const none = document.getElementById("search-empty");
  if (!input) return;
  const articles = [...document.querySelectorAll("article.event[data-event]")];
  const navItems = new Map([...document.querySelectorAll(".events-nav li[data-event]")]
    .map((li) => [li.dataset.event, li]));
  const filter = () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const article of articles) {
      const text = `${article.dataset.event} ${article.querySelector(".summary")?.textContent || ""}`.toLowerCase();
      const match = words.every((w) => text.includes(w));
      article.hidden = !match;
      const li = navItems.get(article.dataset.event);
      if (li) li.hidden = !match;
      if (match) shown += 1;
    }
    for (const section of document.querySelectorAll("section.feature")) {
      section.hidden = !section.querySelector("article.event:not([hidden])");
    }
    for (const group of document.querySelectorAll(".nav-group")) {
      const items = group.querySelectorAll("li[data-event]");
      if (items.length) group.hidden = !group.querySelector("li[data-event]:not([hidden])");
    }
    count.textContent = words.length ? `${shown} of ${articles.length} events` : "";
    none.hidden = shown > 0;
  };
  input.addEventListener("input", filter);
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== input) {
      e.preventDefault();
      input.focus();
    }
  });
}

wireCopy();
wireSearch();
