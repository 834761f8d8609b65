// The app shell's panels. A wide screen shows them side by side; a phone (the media query in
// app.css) shows one at a time, chosen by the tab bar. Opening a room (`#room=` in the URL, or
// the chat title changing) brings the chat forward, so the composer is always in reach.
import { $ } from "./dom.js";

const NARROW = "(max-width: 60rem)";

export function startLayout() {
  const main = $("main");
  const tabs = $("panel-tabs");
  const narrow = window.matchMedia(NARROW);
  document.body.classList.add("shell");

  const show = (view) => {
    main.dataset.view = view;
    for (const button of tabs.querySelectorAll("button[data-view]")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === view));
    }
  };
  const sync = () => {
    tabs.hidden = !narrow.matches;
  };
  for (const button of tabs.querySelectorAll("button[data-view]")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  // a panel a feature hides has no tab
  for (const [view, panel] of [["doc", $("doc-panel")]]) {
    if (panel.hidden) tabs.querySelector(`[data-view=${view}]`).hidden = true;
  }
  if (main.classList.contains("no-chat")) {
    for (const view of ["rooms", "chat"]) tabs.querySelector(`[data-view=${view}]`).hidden = true;
    show("side");
  }
  narrow.addEventListener("change", sync);
  sync();
  window.addEventListener("hashchange", () => {
    if (location.hash.startsWith("#room=")) show("chat");
  });
  const title = $("chat-title");
  if (title) {
    new MutationObserver(() => {
      if (main.dataset.view === "rooms") show("chat");
    }).observe(title, { childList: true, characterData: true, subtree: true });
  }
  return { show };
}
