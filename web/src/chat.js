// Chat: rooms with unread badges, DMs, paged history, typing, read receipts, reactions,
// edit/delete of my messages, and the room's presence (the `chat:<room id>` channel).
//
// Messages are kept by `seq` (per-room order with no gaps): a push whose seq is already
// shown is ignored, and a jump in seq — or a reconnect — is filled with
// `chat:history {room_id, after_seq}`. So every message appears once, in order.
import { $, clear, formatTime, h, showError } from "./dom.js";

const PAGE = 30;
const TYPING_RENEW_MS = 3000;
const EMOJIS = ["👍", "🎉", "❤️"];

export function startChat(conn, channels, me) {
  const roomList = $("room-list");
  const list = $("messages");
  const title = $("chat-title");
  const typingEl = $("typing");
  const chatError = $("chat-error");
  const roomsError = $("rooms-error");
  const input = $("composer-text");
  const sendButton = $("composer-send");
  const leaveButton = $("leave-room");
  const presenceEl = $("presence");

  const rooms = new Map(); // id → room summary
  let current = null; // {id, name, messages: Map seq→message, members: Map user→member, ...}
  const mine = new Set(); // "messageId emoji" I reacted with
  const typists = new Map(); // user_id → {name, timer}
  let lastTypingSent = 0;
  let loadingOlder = false;

  // -- rooms
  const roomLabel = (room) => (room.kind === "dm" ? `@ ${room.peer}` : `# ${room.name}`);

  const renderRooms = () => {
    clear(roomList);
    for (const room of rooms.values()) {
      const unread = room.unread_count || 0;
      const label = `${roomLabel(room)}${room.visibility === "private" ? " (private)" : ""}`;
      roomList.append(h("li", {},
        h("button", {
          type: "button", class: current && current.id === room.id ? "room active" : "room",
          dataset: { roomId: room.id, roomName: room.name },
          "aria-current": current && current.id === room.id ? "true" : null,
          "aria-label": unread ? `${label}, ${unread} unread` : label,
          onclick: () => openRoom(room.id),
        }, label, " ", unread ? h("span", { class: "badge" }, String(unread)) : null,
        room.role ? null : h("span", { class: "muted" }, " (join)"))));
    }
  };

  const loadRooms = async () => {
    // chat:rooms pages (DIHYA_RT_CHAT_ROOMS_PAGE_LIMIT): follow next_cursor to the last page
    const all = [];
    let cursor = null;
    do {
      const reply = await conn.call("chat:rooms", cursor ? { cursor } : {});
      if (!reply.ok) return showError(roomsError, reply.error);
      all.push(...reply.data.rooms);
      cursor = reply.data.more ? reply.data.next_cursor : null;
    } while (cursor);
    rooms.clear();
    for (const room of all) rooms.set(room.id, room);
    renderRooms();
  };

  // -- messages
  const receipts = (message) => {
    if (!current || message.author?.user_id !== me) return null;
    const readers = [...current.members.values()]
      .filter((m) => m.user_id !== me && m.last_read_seq >= message.seq)
      .map((m) => m.name || m.user_id);
    return readers.length ? h("span", { class: "receipt" }, `✓ read by ${readers.join(", ")}`) : null;
  };

  const react = async (message, emoji) => {
    const key = `${message.id} ${emoji}`;
    const event = mine.has(key) ? "chat:unreact" : "chat:react";
    const reply = await conn.call(event, { message_id: message.id, emoji });
    if (!reply.ok) return showError(chatError, reply.error);
    if (event === "chat:react") mine.add(key);
    else mine.delete(key);
    onReaction(reply.data);
  };

  const startEdit = (li, message) => {
    const field = h("input", { "aria-label": "Edit message", value: message.text, maxlength: 4000 });
    const form = h("form", { class: "edit-form", onsubmit: async (e) => {
      e.preventDefault();
      const reply = await conn.call("chat:edit", { message_id: message.id, text: field.value });
      if (!reply.ok) return showError(chatError, reply.error);
      upsert(reply.data);
    } }, field, h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", onclick: () => upsert(message) }, "Cancel"));
    li.querySelector(".text").replaceWith(form);
    field.focus();
  };

  const messageItem = (m) => {
    const own = m.author?.user_id === me;
    const li = h("li", {
      class: `message${own ? " own" : ""}${m.kind === "system" ? " system" : ""}`,
      dataset: { seq: m.seq, id: m.id },
    },
    h("div", { class: "meta" },
      h("strong", { class: "author" }, m.author ? m.author.name || m.author.user_id : "system"), " ",
      h("time", { class: "muted" }, formatTime(m.created_at)),
      m.edited_at && !m.deleted ? h("span", { class: "muted" }, " (edited)") : null),
    h("div", { class: "text" }, m.deleted ? h("em", { class: "muted" }, "message deleted") : m.text));
    if (!m.deleted && m.kind !== "system") {
      const counts = m.reactions || {};
      const bar = h("div", { class: "reactions" });
      for (const emoji of new Set([...Object.keys(counts), ...EMOJIS])) {
        const n = counts[emoji] || 0;
        bar.append(h("button", {
          type: "button", class: n ? "reaction has" : "reaction",
          "aria-pressed": String(mine.has(`${m.id} ${emoji}`)),
          "aria-label": `React ${emoji}${n ? `, ${n}` : ""}`,
          onclick: () => react(m, emoji),
        }, n ? `${emoji} ${n}` : emoji));
      }
      if (own) {
        bar.append(h("button", { type: "button", class: "edit", onclick: () => startEdit(li, m) }, "Edit"),
          h("button", { type: "button", class: "delete", onclick: async () => {
            const reply = await conn.call("chat:delete", { message_id: m.id });
            if (!reply.ok) return showError(chatError, reply.error);
            upsert(reply.data);
          } }, "Delete"));
      }
      li.append(bar);
    }
    const receipt = receipts(m);
    if (receipt) li.append(receipt);
    return li;
  };

  /** Insert or replace one message, keeping the list in seq order. */
  const upsert = (m) => {
    if (!current || m.room_id !== current.id) return;
    current.messages.set(m.seq, m);
    const item = messageItem(m);
    const existing = list.querySelector(`li[data-seq="${m.seq}"]`);
    if (existing) return existing.replaceWith(item);
    const after = [...list.children].find((li) => Number(li.dataset.seq) > m.seq);
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.insertBefore(item, after || null);
    if (!after && atBottom) list.scrollTop = list.scrollHeight;
  };

  const lastSeq = () => (current && current.messages.size ? Math.max(...current.messages.keys()) : 0);
  const firstSeq = () => (current && current.messages.size ? Math.min(...current.messages.keys()) : 0);

  const markRead = async () => {
    if (!current || document.hidden || !lastSeq()) return;
    const reply = await conn.call("chat:read", { room_id: current.id, seq: lastSeq() });
    if (reply.ok && rooms.has(reply.data.room_id)) {
      rooms.get(reply.data.room_id).unread_count = reply.data.unread_count;
      renderRooms();
    }
  };

  /** Fetch everything after what we have (after a reconnect or a seq jump). */
  const catchUp = async () => {
    const room = current;
    for (;;) {
      const reply = await conn.call("chat:history", { room_id: room.id, after_seq: lastSeq(), limit: 100 });
      if (!reply.ok || current !== room) return;
      for (const m of reply.data.messages) upsert(m);
      if (!reply.data.has_more) break;
    }
    markRead();
  };

  const loadOlder = async () => {
    if (!current || loadingOlder || !current.hasMoreBefore) return;
    loadingOlder = true;
    const room = current;
    const reply = await conn.call("chat:history", { room_id: room.id, before_seq: firstSeq(), limit: PAGE });
    loadingOlder = false;
    if (!reply.ok || current !== room) return;
    const height = list.scrollHeight;
    for (const m of reply.data.messages) upsert(m);
    room.hasMoreBefore = reply.data.has_more_before;
    list.scrollTop += list.scrollHeight - height; // keep the reader where they were
  };

  // -- presence of the open room (a channel with presence; one entry per user)
  const renderPresence = () => {
    clear(presenceEl);
    if (!current) return;
    for (const member of current.present.values()) {
      presenceEl.append(h("li", { dataset: { userId: member.user_id } }, member.name || member.user_id));
    }
  };
  conn.on("presence:join", ({ channel, user }) => {
    if (!current || channel !== `chat:${current.id}`) return;
    current.present.set(user.user_id, user);
    renderPresence();
  });
  conn.on("presence:leave", ({ channel, user }) => {
    if (!current || channel !== `chat:${current.id}`) return;
    current.present.delete(user.user_id);
    renderPresence();
  });

  const closeRoom = () => {
    if (current) channels.unsubscribe(`chat:${current.id}`);
    current = null;
    clear(list);
    clear(presenceEl);
    typists.clear();
    renderTyping();
    input.disabled = sendButton.disabled = true;
    leaveButton.hidden = true;
    title.textContent = "No room open";
  };

  const openRoom = async (roomId) => {
    showError(chatError, null);
    showError(roomsError, null);
    closeRoom();
    let room = rooms.get(roomId);
    if (!room || !room.role) {
      const joined = await conn.call("chat:join", { room_id: roomId });
      if (!joined.ok) {
        title.textContent = "Cannot open this room";
        return showError(chatError, joined.error);
      }
      room = { ...joined.data, unread_count: 0 };
      rooms.set(room.id, room);
    }
    const [details, page] = await Promise.all([
      conn.call("chat:room", { room_id: roomId }),
      conn.call("chat:history", { room_id: roomId, limit: PAGE }),
    ]);
    if (!details.ok || !page.ok) {
      title.textContent = "Cannot open this room";
      return showError(chatError, (details.ok ? page : details).error);
    }
    current = {
      id: roomId, name: details.data.name, messages: new Map(), present: new Map(),
      members: new Map(details.data.members.map((m) => [m.user_id, m])),
      hasMoreBefore: page.data.has_more_before,
    };
    title.textContent = roomLabel(details.data);
    for (const m of page.data.messages) upsert(m);
    list.scrollTop = list.scrollHeight;
    input.disabled = sendButton.disabled = false;
    leaveButton.hidden = details.data.kind === "dm";
    renderRooms();
    markRead();
    channels.subscribe(`chat:${roomId}`, {
      history: 0,
      onPublication: () => {},
      onPresence: (members) => {
        if (!current || current.id !== roomId) return;
        current.present = new Map(members.map((m) => [m.user_id, m]));
        renderPresence();
      },
      onError: (err) => showError(chatError, err),
    });
    input.focus();
  };

  // -- typing
  const renderTyping = () => {
    const names = [...typists.values()].map((t) => t.name);
    typingEl.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
  };
  input.addEventListener("input", () => {
    if (!current || !input.value || Date.now() - lastTypingSent < TYPING_RENEW_MS) return;
    lastTypingSent = Date.now();
    conn.call("chat:typing", { room_id: current.id, typing: true });
  });

  // -- pushes
  conn.on("chat:message", (m) => {
    const room = rooms.get(m.room_id);
    if (current && m.room_id === current.id) {
      const gap = m.seq > lastSeq() + 1 && current.messages.size > 0;
      upsert(m);
      if (gap) catchUp();
      else markRead();
    } else if (room && m.author?.user_id !== me) {
      room.unread_count = (room.unread_count || 0) + 1;
      renderRooms();
    } else if (!room) {
      loadRooms(); // a new DM or an invitation
    }
  });
  conn.on("chat:message_edited", upsert);
  conn.on("chat:message_deleted", upsert);
  const onReaction = (r) => {
    const m = current && current.messages.get(r.seq);
    if (m && m.room_id === r.room_id) upsert({ ...m, reactions: r.reactions });
  };
  conn.on("chat:reaction", onReaction);
  conn.on("chat:typing", (t) => {
    if (!current || t.room_id !== current.id || t.user_id === me) return;
    clearTimeout(typists.get(t.user_id)?.timer);
    if (t.typing) {
      const timer = setTimeout(() => { typists.delete(t.user_id); renderTyping(); },
        (t.expires_in || 6) * 1000);
      typists.set(t.user_id, { name: t.name || t.user_id, timer });
    } else {
      typists.delete(t.user_id);
    }
    renderTyping();
  });
  conn.on("chat:read", (r) => {
    if (!current || r.room_id !== current.id) return;
    const member = current.members.get(r.user_id) || { user_id: r.user_id, name: r.user_id };
    member.last_read_seq = Math.max(member.last_read_seq || 0, r.seq);
    current.members.set(r.user_id, member);
    for (const m of current.messages.values()) if (m.author?.user_id === me) upsert(m);
  });
  conn.on("chat:member_joined", (e) => {
    if (current && e.room_id === current.id) {
      current.members.set(e.user_id, { user_id: e.user_id, name: e.name || e.user_id, last_read_seq: 0 });
    }
    if (!rooms.has(e.room_id) || e.user_id === me) loadRooms();
  });
  conn.on("chat:member_left", (e) => {
    if (e.user_id === me) {
      if (current && current.id === e.room_id) closeRoom();
      loadRooms();
    } else if (current && e.room_id === current.id) {
      current.members.delete(e.user_id);
    }
  });

  // -- forms
  $("composer").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!current || !text) return;
    const reply = await conn.call("chat:send", { room_id: current.id, text, client_msg_id: crypto.randomUUID() });
    if (!reply.ok) return showError(chatError, reply.error);
    showError(chatError, null);
    input.value = "";
    lastTypingSent = 0;
    upsert(reply.data);
    list.scrollTop = list.scrollHeight;
  });
  $("create-room").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("new-room-name").value.trim();
    const visibility = $("new-room-private").checked ? "private" : "public";
    const reply = await conn.call("chat:create_room", { name, visibility });
    if (!reply.ok) return showError(roomsError, reply.error);
    $("new-room-name").value = "";
    rooms.set(reply.data.id, { ...reply.data, unread_count: 0 });
    openRoom(reply.data.id);
  });
  $("join-room").addEventListener("submit", (e) => {
    e.preventDefault();
    openRoom($("join-room-id").value.trim());
  });
  $("dm-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const reply = await conn.call("chat:dm", { user_id: $("dm-user").value.trim() });
    if (!reply.ok) return showError(roomsError, reply.error);
    rooms.set(reply.data.id, { ...reply.data, unread_count: 0 });
    openRoom(reply.data.id);
  });
  leaveButton.onclick = async () => {
    const reply = await conn.call("chat:leave", { room_id: current.id });
    if (!reply.ok) return showError(chatError, reply.error);
    closeRoom();
    loadRooms();
  };
  list.addEventListener("scroll", () => {
    if (list.scrollTop < 40) loadOlder();
  });
  document.addEventListener("visibilitychange", markRead);

  conn.onConnect(({ reconnect }) => {
    loadRooms();
    if (reconnect && current) catchUp();
  });
}
