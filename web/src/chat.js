// Chat: rooms with unread and @ badges, public rooms to join (announced live by
// `chat:room_created`), DMs, invitations and share links, a URL per room (`#room=<id>`: reload
// and Back keep your place), paged history with a "New messages" divider, typing, read
// receipts, reactions (yours remembered: `my_reactions`), replies, edit/delete of my messages,
// and the room's presence (the `chat:<room id>` channel).
//
// Messages are kept by `seq` (per-room order with no gaps): a push whose seq is already
// shown is ignored, and a jump in seq — or a reconnect — is filled with
// `chat:history {room_id, after_seq}`. So every message appears once, in order.
// Sending goes through the outbox (chat_outbox.js): the composer clears at once, the message
// shows as pending, and it is resent with the same client_msg_id until stored.
import { $, clear, h, showError } from "./dom.js";
import { renderMessages, snippet } from "./chat_messages.js";
import { Outbox } from "./chat_outbox.js";
import { Reactors } from "./chat_reactors.js";
import { closeEmojiPicker, openEmojiPicker } from "./emoji_picker.js";

const PAGE = 30;
const TYPING_RENEW_MS = 3000;

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
  const composerStatus = $("composer-status");

  const rooms = new Map(); // id → room summary
  // the open room: {id, kind, messages: Map seq→message, members, present, myReactions,
  // unreadFrom, editing, confirming, focusSeq, replyTo, hasMoreBefore}
  let current = null;
  const typists = new Map(); // user_id → {name, timer}
  let lastTypingSent = 0;
  let loadingOlder = false;
  const reactors = new Reactors(conn, me); // who reacted, asked on hover or focus

  // -- the composer's status line: what waits, what failed (next to the composer)
  const renderComposerStatus = () => {
    const waiting = outbox.waiting;
    const failed = outbox.items.filter((i) => i.status === "failed").length;
    const parts = [];
    if (conn.state !== "connected") parts.push("Offline: messages are kept and sent when the connection is back.");
    if (waiting) parts.push(`${waiting} message${waiting > 1 ? "s" : ""} waiting to be sent.`);
    if (failed) parts.push(`${failed} message${failed > 1 ? "s" : ""} not sent: see Retry.`);
    composerStatus.textContent = parts.join(" ");
    composerStatus.dataset.state = failed ? "error" : parts.length ? "waiting" : "";
  };

  // -- the message list, redrawn from `current`
  const render = () => {
    if (!current) {
      clear(list);
      return;
    }
    const active = document.activeElement;
    const inList = list.contains(active);
    const focusLi = inList ? active.closest("li[data-seq]") : null;
    const focusKey = inList ? active.dataset.focusKey || active.getAttribute("aria-label") : null;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const top = list.scrollTop;
    renderMessages(list, {
      me, moderates: current.moderates, messages: current.messages, members: current.members, myReactions: current.myReactions,
      unreadFrom: current.unreadFrom, editing: current.editing, confirming: current.confirming,
      pending: outbox.forRoom(current.id), focusSeq: current.focusSeq,
    }, actions);
    if (reactors.tipFor && !reactors.tipFor.isConnected) reactors.hide(); // its chip was redrawn
    if (focusLi) {
      const li = list.querySelector(`li[data-seq="${focusLi.dataset.seq}"]`);
      const target = li && focusKey
        ? [...li.querySelectorAll("input, button")].find((el) =>
          (el.dataset.focusKey || el.getAttribute("aria-label")) === focusKey) : null;
      (target || li)?.focus({ preventScroll: true });
    }
    list.scrollTop = atBottom ? list.scrollHeight : top;
  };

  const outbox = new Outbox(conn, {
    onChange: () => {
      render();
      renderComposerStatus();
    },
    onSent: (_item, message) => upsert(message),
    storageKey: `dihya-chat-outbox:${me}`,
  });

  // -- rooms
  const roomLabel = (room) => (room.kind === "dm" ? `@ ${room.peer}` : `# ${room.name}`);

  const roomButton = (room) => {
    const unread = room.unread_count || 0;
    const mentions = room.mention_count || 0;
    const label = `${roomLabel(room)}${room.visibility === "private" && room.kind !== "dm" ? " (private)" : ""}`;
    const active = current && current.id === room.id;
    const described = [label, unread ? `${unread} unread` : null, mentions ? `${mentions} mentioning you` : null,
      room.role ? null : "not joined: open to join"].filter(Boolean).join(", ");
    return h("li", {},
      h("button", {
        type: "button", class: active ? "room active" : "room",
        dataset: { roomId: room.id, roomName: room.name },
        "aria-current": active ? "true" : null,
        "aria-label": described,
        onclick: () => openRoom(room.id),
      }, label, " ",
      mentions ? h("span", { class: "badge mention-badge", title: "mentions of you" }, `@${mentions}`) : null,
      unread ? h("span", { class: "badge" }, String(unread)) : null,
      room.role ? null : h("span", { class: "muted" }, " (join)")));
  };

  const renderRooms = () => {
    clear(roomList);
    const all = [...rooms.values()];
    const mine = all.filter((r) => r.role);
    const others = all.filter((r) => !r.role);
    for (const room of mine) roomList.append(roomButton(room));
    if (!mine.length) {
      roomList.append(h("li", { class: "muted empty" }, "No rooms yet: create one below or join a public room."));
    }
    if (others.length) {
      roomList.append(h("li", { class: "room-group" }, "Public rooms to join"));
      for (const room of others) roomList.append(roomButton(room));
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
  let roomsTimer = null;
  const loadRoomsSoon = () => {
    clearTimeout(roomsTimer);
    roomsTimer = setTimeout(loadRooms, 150);
  };

  // -- messages
  const upsert = (m) => {
    if (!current || m.room_id !== current.id) return;
    const { duplicate, my_reactions: mine, ...message } = m;
    if (Array.isArray(mine)) current.myReactions.set(message.id, new Set(mine));
    current.messages.set(message.seq, { ...current.messages.get(message.seq), ...message });
    render();
  };

  const lastSeq = () => (current && current.messages.size ? Math.max(...current.messages.keys()) : 0);
  const firstSeq = () => (current && current.messages.size ? Math.min(...current.messages.keys()) : 0);

  /** My chat notifications about this room (a DM's messages, mentions) become read too. */
  const readNotifications = async (roomId) => {
    const reply = await conn.call("notifications:list", { status: "unread", limit: 50 });
    if (!reply.ok) return;
    const ids = reply.data.items.filter((n) => n.data && n.data.room_id === roomId).map((n) => n.id);
    if (!ids.length) return;
    const marked = await conn.call("notifications:mark_read", { ids });
    // the server tells my other tabs; this tab's bell learns it from the reply
    if (marked.ok) window.dispatchEvent(new CustomEvent("dihya:notifications-changed", { detail: marked.data }));
  };

  const markRead = async () => {
    if (!current || document.hidden || !lastSeq()) return;
    const room = current;
    const reply = await conn.call("chat:read", { room_id: room.id, seq: lastSeq() });
    if (reply.ok && rooms.has(reply.data.room_id)) {
      Object.assign(rooms.get(reply.data.room_id), {
        unread_count: reply.data.unread_count, mention_count: reply.data.mention_count,
        last_read_seq: reply.data.seq,
      });
      renderRooms();
    }
    if (reply.ok && room.notificationsToRead) {
      room.notificationsToRead = false;
      readNotifications(room.id);
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
    const top = list.scrollTop;
    for (const m of reply.data.messages) {
      room.messages.set(m.seq, m);
      room.myReactions.set(m.id, new Set(m.my_reactions || []));
    }
    room.hasMoreBefore = reply.data.has_more_before;
    render();
    list.scrollTop = top + list.scrollHeight - height; // keep the reader where they were
  };

  // -- what a message's buttons do
  const actions = {
    react: async (message, emoji) => {
      const mine = current.myReactions.get(message.id) || new Set();
      const event = mine.has(emoji) ? "chat:unreact" : "chat:react";
      const reply = await conn.call(event, { message_id: message.id, emoji });
      if (!reply.ok) return showError(chatError, reply.error);
      onReaction(reply.data);
    },
    pickReaction: (button, message, about) => openEmojiPicker(button, {
      label: `Add a reaction to ${about}`,
      onPick: (emoji) => {
        const mine = current?.myReactions.get(message.id);
        if (!mine?.has(emoji)) actions.react(message, emoji); // picking one of mine keeps it
      },
    }),
    reactorsSummary: (message, emoji) => reactors.summary(message.id, emoji),
    showReactors: (chip, message, emoji) => reactors.show(chip, message.id, emoji),
    hideReactors: () => reactors.hide(),
    reply: (message) => {
      current.replyTo = message;
      $("reply-to-text").textContent = `Replying to ${message.author?.name || "system"}: "${snippet(message.text)}"`;
      $("reply-to").hidden = false;
      input.focus();
    },
    edit: (message) => {
      current.editing = { id: message.id, draft: message.text };
      current.focusSeq = message.seq;
      render();
      list.querySelector(".edit-form input")?.focus();
    },
    draft: (text) => {
      if (current.editing) current.editing.draft = text;
    },
    cancelEdit: () => {
      const seq = current.editing && [...current.messages.values()].find((m) => m.id === current.editing.id)?.seq;
      current.editing = null;
      render();
      if (seq) list.querySelector(`li[data-seq="${seq}"]`)?.focus();
    },
    saveEdit: async (message, text) => {
      const reply = await conn.call("chat:edit", { message_id: message.id, text });
      if (!reply.ok) return showError(chatError, reply.error);
      current.editing = null;
      upsert(reply.data);
    },
    askDelete: (message) => {
      current.confirming = message.id;
      current.focusSeq = message.seq;
      render();
      list.querySelector('.confirm-delete button[data-focus-key="confirm"]')?.focus();
    },
    cancelDelete: () => {
      current.confirming = null;
      render();
    },
    confirmDelete: async (message) => {
      current.confirming = null;
      const reply = await conn.call("chat:delete", { message_id: message.id });
      if (!reply.ok) return showError(chatError, reply.error);
      upsert(reply.data);
    },
    retry: (cmid) => outbox.retry(cmid),
    discard: (cmid) => outbox.discard(cmid),
  };

  const cancelReply = () => {
    if (current) current.replyTo = null;
    $("reply-to").hidden = true;
  };
  $("reply-cancel").onclick = () => {
    cancelReply();
    input.focus();
  };

  // -- keyboard: arrows between messages, Enter into a message's actions, Escape back out
  list.addEventListener("keydown", (e) => {
    const li = e.target.closest("li.message[data-seq]");
    if (!li || !current) return;
    const messages = [...list.querySelectorAll("li.message[data-seq]")];
    const i = messages.indexOf(li);
    const go = (next) => {
      if (!next) return;
      e.preventDefault();
      for (const m of messages) m.tabIndex = -1;
      next.tabIndex = 0;
      current.focusSeq = Number(next.dataset.seq);
      next.focus();
    };
    if (e.target === li) {
      if (e.key === "ArrowDown") go(messages[i + 1]);
      else if (e.key === "ArrowUp") {
        if (i === 0) loadOlder();
        go(messages[i - 1]);
      } else if (e.key === "Home") go(messages[0]);
      else if (e.key === "End") go(messages.at(-1));
      else if (e.key === "Enter") {
        e.preventDefault();
        li.querySelector(".actions button, .reactions button, .confirm-delete button")?.focus();
      }
      return;
    }
    if (e.target.tagName === "BUTTON") {
      const buttons = [...li.querySelectorAll("button")];
      const j = buttons.indexOf(e.target);
      if (e.key === "Escape") {
        e.preventDefault();
        if (current.confirming) actions.cancelDelete();
        li.focus();
        list.querySelector(`li[data-seq="${li.dataset.seq}"]`)?.focus();
      } else if (e.key === "ArrowRight") {
        e.preventDefault();
        buttons[(j + 1) % buttons.length].focus();
      } else if (e.key === "ArrowLeft") {
        e.preventDefault();
        buttons[(j - 1 + buttons.length) % buttons.length].focus();
      }
    }
  });
  list.addEventListener("focusin", (e) => {
    const li = e.target.closest("li.message[data-seq]");
    if (li && current) current.focusSeq = Number(li.dataset.seq);
  });

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

  // -- a URL per room: #room=<id>
  const roomInUrl = () => new URLSearchParams(location.hash.slice(1)).get("room");
  const setUrl = (roomId) => {
    const hash = roomId ? `#room=${encodeURIComponent(roomId)}` : "";
    if (location.hash === hash || (!roomId && !location.hash)) return;
    history.pushState(null, "", hash || location.pathname + location.search);
  };
  const shareLink = (roomId) => `${location.origin}${location.pathname}#room=${encodeURIComponent(roomId)}`;

  const closeRoom = () => {
    if (current) channels.unsubscribe(`chat:${current.id}`);
    closeEmojiPicker({ restoreFocus: false });
    reactors.hide();
    current = null;
    clear(list);
    clear(presenceEl);
    typists.clear();
    renderTyping();
    cancelReply();
    input.disabled = sendButton.disabled = $("composer-emoji").disabled = true;
    leaveButton.hidden = true;
    $("room-info").hidden = true;
    $("chat-empty").hidden = false;
    title.textContent = "No room open";
  };

  let opening = 0;
  const openRoom = async (roomId, { fromUrl = false } = {}) => {
    const ticket = ++opening;
    showError(chatError, null);
    showError(roomsError, null);
    closeRoom();
    if (!fromUrl) setUrl(roomId);
    let room = rooms.get(roomId);
    if (!room || !room.role) {
      const joined = await conn.call("chat:join", { room_id: roomId });
      if (ticket !== opening) return;
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
    if (ticket !== opening) return;
    if (!details.ok || !page.ok) {
      title.textContent = "Cannot open this room";
      return showError(chatError, (details.ok ? page : details).error);
    }
    const readUpTo = details.data.last_read_seq ?? 0;
    const firstUnread = page.data.messages.find((m) => m.seq > readUpTo && m.author?.user_id !== me);
    current = {
      id: roomId, kind: details.data.kind, name: details.data.name, messages: new Map(), present: new Map(),
      members: new Map(details.data.members.map((m) => [m.user_id, m])), myReactions: new Map(),
      hasMoreBefore: page.data.has_more_before, unreadFrom: firstUnread ? firstUnread.seq : null,
      editing: null, confirming: null, focusSeq: null, replyTo: null,
      moderates: ["owner", "moderator"].includes(details.data.role),
      notificationsToRead: details.data.kind === "dm" || (rooms.get(roomId)?.mention_count || 0) > 0,
    };
    title.textContent = roomLabel(details.data);
    $("chat-empty").hidden = true;
    $("room-info").hidden = false;
    $("room-id").textContent = roomId;
    // inviting is for the room's owner and moderators (the server checks it too)
    $("invite-form").hidden = details.data.kind === "dm" || !["owner", "moderator"].includes(details.data.role);
    $("copy-room-status").textContent = "";
    $("invite-status").textContent = "";
    for (const m of page.data.messages) {
      current.messages.set(m.seq, m);
      current.myReactions.set(m.id, new Set(m.my_reactions || []));
    }
    render();
    const divider = $("unread-divider");
    if (divider) divider.scrollIntoView({ block: "center" });
    else list.scrollTop = list.scrollHeight;
    if (!page.data.messages.length) {
      list.append(h("li", { class: "empty muted" }, "No messages yet: say hello."));
    }
    input.disabled = sendButton.disabled = $("composer-emoji").disabled = false;
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

  window.addEventListener("popstate", () => {
    const roomId = roomInUrl();
    if (roomId && (!current || current.id !== roomId)) openRoom(roomId, { fromUrl: true });
    else if (!roomId && current) closeRoom();
  });

  // -- typing
  const renderTyping = () => {
    const names = [...typists.values()].map((t) => t.name);
    typingEl.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
  };
  input.addEventListener("input", () => {
    if (!current || !input.value || Date.now() - lastTypingSent < TYPING_RENEW_MS) return;
    if (conn.state !== "connected") return;
    lastTypingSent = Date.now();
    conn.call("chat:typing", { room_id: current.id, typing: true });
  });

  // -- pushes
  conn.on("chat:message", (m) => {
    if (m.author?.user_id === me && m.client_msg_id) outbox.confirm(m.client_msg_id);
    const room = rooms.get(m.room_id);
    const aboutMe = m.author?.user_id !== me && (room?.kind === "dm" || (m.mentions || []).includes(me));
    if (current && m.room_id === current.id) {
      const gap = m.seq > lastSeq() + 1 && current.messages.size > 0;
      if (aboutMe) current.notificationsToRead = true;
      // the list is redrawn, not appended to: a screen reader hears each new message here
      if (m.author?.user_id !== me && !current.messages.has(m.seq)) {
        $("chat-announce").textContent = `${m.author ? m.author.name || m.author.user_id : "system"}: ${snippet(m.text)}`;
      }
      upsert(m);
      if (gap) catchUp();
      else markRead();
    } else if (room && m.author?.user_id !== me) {
      room.unread_count = (room.unread_count || 0) + 1;
      if ((m.mentions || []).includes(me)) room.mention_count = (room.mention_count || 0) + 1;
      renderRooms();
    } else if (!room) {
      loadRoomsSoon(); // a new DM or an invitation
    }
  });
  conn.on("chat:message_edited", upsert);
  conn.on("chat:message_deleted", upsert);
  const onReaction = (r) => {
    reactors.forget(r.message_id);
    if (!current || r.room_id !== current.id) return;
    reactors.hide(); // its reaction is redrawn below
    if (r.user_id === me) {
      const mine = current.myReactions.get(r.message_id) || new Set();
      if (r.action === "add") mine.add(r.emoji);
      else mine.delete(r.emoji);
      current.myReactions.set(r.message_id, mine);
    }
    const m = current.messages.get(r.seq);
    if (m && m.id === r.message_id) upsert({ ...m, reactions: r.reactions });
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
    if (r.user_id === me) {
      // read in another tab of mine: this tab's badges follow
      const room = rooms.get(r.room_id);
      if (room && (room.last_read_seq ?? -1) < r.seq && (!current || current.id !== r.room_id)) loadRoomsSoon();
      return;
    }
    if (!current || r.room_id !== current.id) return;
    const member = current.members.get(r.user_id) || { user_id: r.user_id, name: r.user_id };
    member.last_read_seq = Math.max(member.last_read_seq || 0, r.seq);
    current.members.set(r.user_id, member);
    render();
  });
  conn.on("chat:room_created", (room) => {
    if (!rooms.has(room.id)) {
      rooms.set(room.id, { ...room, unread_count: 0, mention_count: 0 });
      renderRooms();
    }
  });
  conn.on("chat:member_joined", (e) => {
    if (current && e.room_id === current.id) {
      current.members.set(e.user_id, { user_id: e.user_id, name: e.name || e.user_id, last_read_seq: 0 });
    }
    if (!rooms.has(e.room_id) || e.user_id === me) loadRoomsSoon();
  });
  conn.on("chat:member_left", (e) => {
    if (e.user_id === me) {
      if (current && current.id === e.room_id) {
        closeRoom();
        setUrl(null);
      }
      loadRoomsSoon();
    } else if (current && e.room_id === current.id) {
      current.members.delete(e.user_id);
    }
  });

  // -- forms
  const submit = () => {
    const text = input.value.trim();
    if (!current || !text) return;
    // cleared now: what is typed next is kept whatever the send's reply does
    input.value = "";
    lastTypingSent = 0;
    const replyTo = current.replyTo ? current.replyTo.id : null;
    cancelReply();
    outbox.add(current.id, text, replyTo);
    list.scrollTop = list.scrollHeight;
  };
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    } else if (e.key === "Escape" && current?.replyTo) {
      cancelReply();
    }
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
  $("join-room").addEventListener("submit", async (e) => {
    e.preventDefault();
    let value = $("join-room-id").value.trim();
    const fromLink = value.match(/#room=([^&\s]+)/); // a shared link works as well as an id
    if (fromLink) value = decodeURIComponent(fromLink[1]);
    await openRoom(value);
    if (current && current.id === value) $("join-room-id").value = "";
  });
  $("dm-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const reply = await conn.call("chat:dm", { user_id: $("dm-user").value.trim() });
    if (!reply.ok) return showError(roomsError, reply.error);
    $("dm-user").value = "";
    rooms.set(reply.data.id, { ...reply.data, unread_count: 0 });
    openRoom(reply.data.id);
  });
  $("invite-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!current) return;
    const user = $("invite-user").value.trim();
    const reply = await conn.call("chat:invite", { room_id: current.id, user_id: user });
    if (!reply.ok) {
      $("invite-status").textContent = "";
      return showError(chatError, reply.error);
    }
    showError(chatError, null);
    $("invite-user").value = "";
    $("invite-status").textContent = reply.data.added ? `${user} was added.` : `${user} is a member already.`;
  });
  $("copy-room-link").addEventListener("click", async () => {
    if (!current) return;
    const link = shareLink(current.id);
    try {
      await navigator.clipboard.writeText(link);
      $("copy-room-status").textContent = "Link copied.";
    } catch {
      $("copy-room-status").textContent = link; // no clipboard (plain http): show it to copy
    }
  });
  leaveButton.onclick = async () => {
    const reply = await conn.call("chat:leave", { room_id: current.id });
    if (!reply.ok) return showError(chatError, reply.error);
    closeRoom();
    setUrl(null);
    loadRooms();
  };
  list.addEventListener("scroll", () => {
    if (list.scrollTop < 40) loadOlder();
  });
  document.addEventListener("visibilitychange", markRead);

  // -- an emoji in the composer, where the caret is
  const emojiButton = $("composer-emoji");
  emojiButton.addEventListener("click", () => openEmojiPicker(emojiButton, {
    label: "Insert an emoji in your message",
    onPick: (emoji) => {
      const { selectionStart: start, selectionEnd: end, value } = input;
      input.value = value.slice(0, start) + emoji + value.slice(end);
      input.focus();
      input.setSelectionRange(start + emoji.length, start + emoji.length);
      input.dispatchEvent(new Event("input", { bubbles: true })); // grows, says "typing"
    },
  }));

  conn.onState(() => renderComposerStatus());
  conn.onConnect(async ({ reconnect }) => {
    showError(chatError, null); // an error from before the break is stale now
    reactors.forgetAll(); // reactions may have changed while we were away
    renderComposerStatus();
    await loadRooms();
    if (reconnect && current) catchUp();
    else if (!reconnect && roomInUrl()) openRoom(roomInUrl(), { fromUrl: true });
  });
}
