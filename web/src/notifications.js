// The bell: unseen badge, a dropdown with mark read / mark all read / archive.
// The server pushes `notifications:counts` at connect and after every change, and
// `notifications:new` / `notifications:updated` to every connection of the user — so a second
// tab follows along without any code of its own. After a reconnect we reload the first page;
// after the server's `resync` the counts too (nothing pushes them then).
import { $, clear, formatTime, h, showError } from "./dom.js";

export function startNotifications(conn) {
  const bell = $("bell");
  const badge = $("bell-badge");
  const panel = $("notif-panel");
  const list = $("notif-list");
  const empty = $("notif-empty");
  const items = new Map(); // id → notification, newest first by insertion

  const setCounts = ({ unseen }) => {
    badge.textContent = String(unseen);
    badge.hidden = unseen === 0;
    bell.setAttribute("aria-label", `Notifications, ${unseen} unseen`);
  };

  const act = async (event, payload) => {
    const reply = await conn.call(event, payload);
    if (!reply.ok) {
      showError($("rooms-error"), reply.error);
      return;
    }
    apply(reply.data.ids, reply.data.state);
    setCounts(reply.data.counts);
  };

  const row = (n) => {
    const unread = !n.read_at;
    return h("li", { class: unread ? "notif unread" : "notif", dataset: { id: n.id } },
      h("div", { class: "notif-title" }, unread ? h("span", { class: "dot", "aria-label": "unread" }) : null,
        n.title),
      n.body ? h("div", { class: "notif-body" }, n.body) : null,
      h("time", { class: "muted" }, formatTime(n.created_at)),
      h("div", { class: "notif-actions" },
        unread ? h("button", { type: "button", class: "mark-read",
          onclick: () => act("notifications:mark_read", { ids: [n.id] }) }, "Mark read") : null,
        h("button", { type: "button", class: "archive",
          onclick: () => act("notifications:archive", { ids: [n.id] }) }, "Archive")));
  };

  const render = () => {
    clear(list);
    const sorted = [...items.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    for (const n of sorted) list.append(row(n));
    empty.hidden = items.size > 0;
  };

  const apply = (ids, state) => {
    const now = new Date().toISOString();
    for (const id of ids) {
      const n = items.get(id);
      if (!n) continue;
      if (state === "read") Object.assign(n, { read_at: now, seen_at: n.seen_at || now });
      else if (state === "unread") n.read_at = null;
      else if (state === "seen") n.seen_at = n.seen_at || now;
      else if (state === "archived") items.delete(id);
    }
    if (state === "unarchived") load();
    render();
  };

  const load = async () => {
    const reply = await conn.call("notifications:list", { limit: 20 });
    if (!reply.ok) return;
    items.clear();
    for (const n of reply.data.items) items.set(n.id, n);
    render();
  };

  conn.on("notifications:counts", setCounts);
  conn.on("notifications:new", (n) => {
    items.set(n.id, n);
    render();
  });
  conn.on("notifications:updated", ({ ids, state }) => apply(ids, state));
  // another panel of this page changed notifications (the chat marks a room's read): the
  // server tells the other tabs, this tab learns it from that panel's reply
  window.addEventListener("dihya:notifications-changed", ({ detail }) => {
    apply(detail.ids, detail.state);
    setCounts(detail.counts);
  });
  conn.onConnect(async ({ resync }) => {
    load();
    if (!resync) return; // a (re)connect pushes the counts; after a resync we ask
    const reply = await conn.call("notifications:counts", {});
    if (reply.ok) setCounts(reply.data);
  });

  $("notif-mark-all").onclick = () => act("notifications:mark_all_read", {});
  const toggle = (open) => {
    panel.hidden = !open;
    bell.setAttribute("aria-expanded", String(open));
  };
  bell.onclick = () => toggle(panel.hidden);
  panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      toggle(false);
      bell.focus();
    }
  });
  render();
}
