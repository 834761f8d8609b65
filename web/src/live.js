// The live-updates panel: a `live:` channel (server-only publishing) shown as it arrives.
// Publish from the button (dev mode: POST /dev/publish) or, in production, from a worker:
//   curl -X POST http://127.0.0.1:5000/api/v1/publish -H "Authorization: Bearer $KEY" \
//        -H 'Content-Type: application/json' -d '{"channel":"live:demo","data":{"text":"hi"}}'
//
// Each row is numbered by the publication's own position, `offset` within its `epoch`, never by
// a counter of the page: a reload shows the same numbers. A server whose history restarted (the
// in-memory broker after a restart) begins a new epoch at offset 1; the panel says so with a
// divider instead of showing a second "#1" as if it were the same stream.
import { $, clear, formatTime, fullTime, h, showError } from "./dom.js";

export function startLive(conn, channels, channel) {
  const list = $("live-list");
  const error = $("live-error");
  const empty = $("live-empty");
  $("live-channel").textContent = channel;
  clear(list);

  const render = (pub) => {
    const data = pub.data;
    const text = data && typeof data === "object" && "text" in data ? data.text
      : JSON.stringify(data);
    const newest = list.querySelector("li.pub");
    if (newest && newest.dataset.epoch !== String(pub.epoch)) {
      list.prepend(h("li", { class: "epoch-break", dataset: { epoch: pub.epoch } },
        "The server's history restarted: a new stream begins at #1."));
    }
    const stream = String(pub.epoch || "").slice(0, 6);
    list.prepend(h("li", { class: "pub", dataset: { offset: pub.offset, epoch: pub.epoch, id: pub.id },
      title: `publication ${pub.offset} of stream ${stream} · ${fullTime(pub.ts)}` },
      h("span", { class: "offset" }, `#${pub.offset}`), " ",
      h("span", { class: "live-text" }, text), " ",
      h("time", { class: "muted" }, formatTime(pub.ts))));
    if (empty) empty.hidden = true;
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
