// The bell: unseen badge, a panel with Unread / All / Archived tabs, mark read / mark all read /
// archive / restore. The server pushes `notifications:counts` at connect and after every
// change, and `notifications:new` / `notifications:updated` to every connection of the user —
// so a second tab follows along without any code of its own. After a reconnect we reload the
// shown tab; after the server's `resync` the counts too (nothing pushes them then).
//
// Opening the panel marks everything seen (the badge counts unseen). A click on an item marks
// it read and leads to it: its `action_url` when it is on this site, else its room
// (`data.room_id` → `/#room=<id>`, which the chat panel follows). Escape or a click outside
// closes the panel and gives the focus back to the bell.
import { $, clear, h, refreshTimes, showError, timeAgo } from "./dom.js";

const KIND = { "chat.dm": "Direct message", "chat.mention": "Mention" };

/** Where a notification leads, or null: a same-site path, or the room it is about. */
export function targetOf(n) {
  const url = typeof n.action_url === "string" ? n.action_url : "";
  if (url.startsWith("/") && !url.startsWith("//")) return url;
  if (url) {
    try {
      const parsed = new URL(url, location.href);
      if (parsed.origin === location.origin) return parsed.pathname + parsed.search + parsed.hash;
    } catch { /* not a URL: fall back to the room */ }
  }
  const room = n.data && n.data.room_id;
  return typeof room === "string" && room ? `/#room=${encodeURIComponent(room)}` : null;
}

function go(target) {
  const here = new URL(location.href);
  const there = new URL(target, location.href);
  if (there.pathname === here.pathname && there.search === here.search && there.hash) {
    location.hash = there.hash; // same page: the chat panel follows the hash
  } else {
    location.assign(there.href);
  }
}

export function startNotifications(conn) {
  const bell = $("bell");
  const badge = $("bell-badge");
  const panel = $("notif-panel");
  const list = $("notif-list");
  const empty = $("notif-empty");
  const wrap = bell.closest(".bell-wrap");
  const tabs = [...panel.querySelectorAll("[role=tab]")];
  const items = new Map(); // id → notification of the shown tab
  let status = "all";
  let unseen = 0;

  const setCounts = (counts) => {
    unseen = counts.unseen;
    badge.textContent = String(unseen);
    badge.hidden = unseen === 0;
    bell.setAttribute("aria-label", `Notifications, ${unseen} unseen`);
    if (!panel.hidden && unseen > 0) markSeen();
  };

  const act = async (event, payload) => {
    const reply = await conn.call(event, payload);
    if (!reply.ok) {
      showError($("rooms-error"), reply.error);
      return false;
    }
    apply(reply.data.ids, reply.data.state);
    setCounts(reply.data.counts);
    return true;
  };

  const markSeen = () => {
    unseen = 0; // once per opening, not once per push
    conn.call("notifications:mark_all_seen", {}).then((reply) => {
      if (reply.ok) setCounts(reply.data.counts);
    });
  };

  const open = async (n) => {
    const target = targetOf(n);
    if (!n.read_at && !n.archived_at) await act("notifications:mark_read", { ids: [n.id] });
    if (!target) return;
    toggle(false, false);
    go(target);
  };

  const row = (n) => {
    const unread = !n.read_at;
    const target = targetOf(n);
    const title = [unread ? h("span", { class: "dot", "aria-hidden": "true" }) : null,
      KIND[n.category] ? h("span", { class: "notif-kind" }, KIND[n.category]) : null,
      KIND[n.category] ? " " : null,
      h("span", { class: "notif-title-text" }, n.title)];
    if (unread) title.push(h("span", { class: "visually-hidden" }, " (unread)"));
    return h("li", { class: unread ? "notif unread" : "notif", dataset: { id: n.id } },
      target
        ? h("button", { type: "button", class: "notif-title notif-open", onclick: () => open(n) },
          h("span", { class: "visually-hidden" }, "Open: "), ...title)
        : h("div", { class: "notif-title" }, ...title),
      n.body ? h("div", { class: "notif-body" }, n.body) : null,
      timeAgo(n.created_at),
      h("div", { class: "notif-actions" },
        unread && status !== "archived" ? h("button", { type: "button", class: "mark-read",
          "aria-label": `Mark read: ${n.title}`,
          onclick: () => act("notifications:mark_read", { ids: [n.id] }) }, "Mark read") : null,
        status === "archived"
          ? h("button", { type: "button", class: "unarchive", "aria-label": `Restore: ${n.title}`,
            onclick: () => act("notifications:unarchive", { ids: [n.id] }) }, "Restore")
          : h("button", { type: "button", class: "archive", "aria-label": `Archive: ${n.title}`,
            onclick: () => act("notifications:archive", { ids: [n.id] }) }, "Archive")));
  };

  const EMPTY = {
    all: "No notifications yet. Mentions, direct messages and updates from your team appear here.",
    unread: "You are all caught up: nothing unread.",
    archived: "Nothing archived. Archive a notification to put it away without losing it.",
  };

  const render = () => {
    const focused = document.activeElement && list.contains(document.activeElement)
      ? document.activeElement.closest("li")?.dataset.id : null;
    clear(list);
    const sorted = [...items.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    for (const n of sorted) list.append(row(n));
    empty.textContent = EMPTY[status];
    empty.hidden = items.size > 0;
    if (focused) { // keep the keyboard where it was (or on the panel when the item went)
      const again = list.querySelector(`li[data-id="${CSS.escape(focused)}"] button`);
      (again || panel).focus();
    }
  };

  const belongs = (n) => (status === "archived" ? !!n.archived_at
    : !n.archived_at && (status === "all" || !n.read_at));

  const apply = (ids, state) => {
    const now = new Date().toISOString();
    for (const id of ids) {
      const n = items.get(id);
      if (!n) continue;
      if (state === "read") Object.assign(n, { read_at: now, seen_at: n.seen_at || now });
      else if (state === "unread") n.read_at = null;
      else if (state === "seen") n.seen_at = n.seen_at || now;
      else if (state === "archived") n.archived_at = now;
      else if (state === "unarchived") n.archived_at = null;
      if (!belongs(n) && !(status === "unread" && state === "read")) items.delete(id);
    }
    if (state === "unarchived" && status !== "archived") load();
    render();
  };

  let loading = 0;
  const load = async () => {
    const mine = ++loading;
    const reply = await conn.call("notifications:list", { status, limit: 20 });
    if (!reply.ok || mine !== loading) return;
    items.clear();
    for (const n of reply.data.items) items.set(n.id, n);
    render();
  };

  const selectTab = (tab) => {
    status = tab.dataset.status;
    for (const t of tabs) {
      t.setAttribute("aria-selected", String(t === tab));
      t.tabIndex = t === tab ? 0 : -1;
    }
    list.setAttribute("aria-labelledby", tab.id);
    items.clear();
    render();
    load();
  };
  for (const tab of tabs) {
    tab.tabIndex = tab.dataset.status === status ? 0 : -1;
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      next.focus();
      selectTab(next);
    });
  }

  conn.on("notifications:counts", setCounts);
  conn.on("notifications:new", (n) => {
    if (!belongs(n)) return;
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

  const place = () => {
    // a phone: the panel is fixed under the header, across the screen (app.css)
    const top = Math.round(bell.getBoundingClientRect().bottom + 6);
    panel.style.setProperty("--panel-top", `${top}px`);
  };
  const toggle = (show, refocus = true) => {
    if (show === !panel.hidden) return;
    panel.hidden = !show;
    bell.setAttribute("aria-expanded", String(show));
    if (show) {
      place();
      refreshTimes(list);
      load();
      if (unseen > 0) markSeen();
      (tabs.find((t) => t.getAttribute("aria-selected") === "true") || panel).focus();
    } else if (refocus) {
      bell.focus();
    }
  };
  bell.onclick = () => toggle(panel.hidden);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !panel.hidden) {
      e.preventDefault();
      toggle(false);
    }
  });
  document.addEventListener("click", (e) => {
    if (panel.hidden || wrap.contains(e.target)) return;
    // a click on another control keeps its focus; a click on nothing gives it to the bell
    const control = e.target.closest && e.target.closest("a,button,input,textarea,select,[tabindex]");
    toggle(false, !control);
  });
  window.addEventListener("resize", () => {
    if (!panel.hidden) place();
  });
  setInterval(() => refreshTimes(list), 30_000);
  render();
}
