// The live-updates panel: a `live:` channel (server-only publishing) shown as it arrives.
// Publish from the button (dev mode: POST /dev/publish) or, in production, from a worker:
//   curl -X POST http://127.0.0.1:5000/api/v1/publish -H "Authorization: Bearer $KEY" \
//        -H 'Content-Type: application/json' -d '{"channel":"live:demo","data":{"text":"hi"}}'
import { $, clear, formatTime, h, showError } from "./dom.js";

export function startLive(conn, channels, channel) {
  const list = $("live-list");
  const error = $("live-error");
  $("live-channel").textContent = channel;
  clear(list);

  const render = (pub) => {
    const data = pub.data;
    const text = data && typeof data === "object" && "text" in data ? data.text
      : JSON.stringify(data);
    list.prepend(h("li", { dataset: { offset: pub.offset, id: pub.id } },
      h("span", { class: "offset" }, `#${pub.offset}`), " ",
      h("span", { class: "live-text" }, text), " ",
      h("time", { class: "muted" }, formatTime(pub.ts))));
  };

  channels.subscribe(channel, {
    onPublication: render,
    onError: (err) => showError(error, err),
  });

  const button = $("live-publish");
  if (button) {
    button.onclick = async () => {
      const response = await fetch("/dev/publish", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ channel, data: { text: `update at ${new Date().toLocaleTimeString()}` } }),
      });
      const body = await response.json().catch(() => null);
      showError(error, body && !body.ok ? body.error : null);
    };
  }
}
