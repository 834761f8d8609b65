// The connection banner: while the page is not connected, a bar under the header says so in
// words (connecting / reconnecting / offline, with the reason) and offers "Retry now". The
// header keeps its small state pill (#conn-state) for a glance when all is well.
import { $ } from "./dom.js";

const WORDS = {
  connecting: "Connecting…",
  reconnecting: "Connection lost. Reconnecting… what you missed will be caught up.",
  offline: "Offline. Nothing is sent or received until the connection is back.",
};

export function startBanner(conn) {
  const pill = $("conn-state");
  const banner = $("conn-banner");
  const text = $("conn-banner-text");
  const detail = $("conn-banner-detail");
  const retry = $("conn-retry");
  let shownAt = 0;

  retry.onclick = () => conn.retry();
  return conn.onState((state, why) => {
    pill.dataset.state = state;
    pill.textContent = state;
    banner.dataset.state = state;
    if (state === "connected") {
      banner.hidden = true;
      return;
    }
    if (banner.hidden) shownAt = Date.now();
    banner.hidden = false;
    text.textContent = WORDS[state] || state;
    detail.textContent = why ? `(${why})` : "";
    retry.hidden = state === "connecting" && Date.now() - shownAt < 3000;
  });
}
