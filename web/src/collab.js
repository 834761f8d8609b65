// Collaborative editing: a Yjs document shared over our own connection (`doc:*` events,
// docs/collab.md), bound to a plain <textarea>. The reference JS provider for the server.
//
// - DocProvider: the transport. Join (apply the server's step 2, answer its step 1 with
//   ours: what the server lacks, e.g. edits made offline), send local changes as
//   `doc:update` (one in flight at a time, the rest merged), apply the others' `doc:update`,
//   rejoin after a reconnect, and keep the participants' awareness (cursors, by name). It
//   announces itself on joining (`{cursor: null}` until the caret moves), so the others
//   list a newcomer at once.
// - bindTextarea: a diff of the textarea's value becomes Y.Text delete/insert at the changed
//   range; a remote change rewrites the value and moves the caret by the change's delta, so
//   what the others type before my caret does not move me.
// - startEditor: the page's "Document" panel: the text, who else is here (a colour each),
//   and their cursors drawn over the text (collab_cursors.js).
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import * as syncProtocol from "y-protocols/sync";
import * as Y from "yjs";
import { colorOf, cursorOverlay, cursorState, MAX_DRAWN, resolveCursor } from "./collab_cursors.js";
import { $, clear, h, showError } from "./dom.js";

const MESSAGE_SYNC = 0; // y-protocols' outer message type, as the server frames it
const REMOTE = Symbol("remote"); // transaction origin of what came from the server
const TEXTAREA = Symbol("textarea"); // transaction origin of the local user's typing
const AWARENESS_THROTTLE_MS = 100;
const AWARENESS_RENEW_MS = 15000; // as y-protocols: renew before the others time us out
const AWARENESS_TIMEOUT_MS = 30000; // drop a participant not heard of for that long
const RETRYABLE = new Set(["timeout", "disconnected", "conflict", "unavailable", "internal"]);
const RATE_LIMITED_RETRY_MS = 1000;
const JOIN_RETRY_MAX_MS = 10000;

/** Feed a server sync message (`[0, type, …]`) to doc; returns our answer message or null. */
function readSync(doc, bytes) {
  const decoder = decoding.createDecoder(new Uint8Array(bytes));
  decoding.readVarUint(decoder); // MESSAGE_SYNC
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, MESSAGE_SYNC);
  syncProtocol.readSyncMessage(decoder, encoder, doc, REMOTE);
  return encoding.length(encoder) > 1 ? encoding.toUint8Array(encoder) : null;
}

/** Our sync step 1 (our state vector), so a rejoin's step 2 carries only what we lack. */
function syncStep1(doc) {
  const encoder = encoding.createEncoder();
  encoding.writeVarUint(encoder, MESSAGE_SYNC);
  syncProtocol.writeSyncStep1(encoder, doc);
  return encoding.toUint8Array(encoder);
}

export class DocProvider {
  /**
   * @param {import("./connection.js").Connection} conn
   * @param {string} docId
   * @param {{onStatus?: Function, onPeers?: Function, onError?: Function}} callbacks
   *   onStatus({synced, readOnly, offline, refused?}), onPeers(Map client_id → {user, state}),
   *   onError(error envelope | null)
   */
  constructor(conn, docId, { onStatus = () => {}, onPeers = () => {}, onError = () => {} } = {}) {
    this.conn = conn;
    this.docId = docId;
    this.doc = new Y.Doc();
    this.text = this.doc.getText("text"); // the server's default root (GET ?format=text)
    this.onStatus = onStatus;
    this.onPeers = onPeers;
    this.onError = onError;
    this.synced = false; // joined on the current connection, our step 2 sent
    this.joinedOnce = false;
    this.readOnly = true; // until the server says otherwise
    this.clientId = null; // our awareness key, chosen by the server
    this.peers = new Map(); // client_id → {user, state, seen}
    this.pending = []; // local updates not sent yet
    this.inflight = false;
    this.localState = { cursor: null }; // present, caret not placed yet: sent on join
    this.awarenessTimer = null;
    this.lastAwarenessSent = 0;
    this.destroyed = false;
    this.attempt = 0; // joins started
    this.retries = 0; // failed joins in a row
    this.retryTimer = null;
    this.connection = 0; // bumped at each disconnect: a reply from before is moot

    this.onUpdate = (update, origin) => {
      if (origin === REMOTE || this.readOnly) return;
      this.pending.push(update);
      this.flush();
    };
    this.doc.on("update", this.onUpdate);
    this.onRemoteUpdate = ({ doc_id: id, update }) => {
      if (id === this.docId) Y.applyUpdate(this.doc, new Uint8Array(update), REMOTE);
    };
    this.onRemoteAwareness = (a) => {
      if (a.doc_id !== this.docId || a.client_id === this.clientId) return;
      if (a.state === null) this.peers.delete(a.client_id);
      else this.peers.set(a.client_id, { user: a.user, state: a.state, seen: Date.now() });
      this.onPeers(this.peers);
    };
    conn.on("doc:update", this.onRemoteUpdate);
    conn.on("doc:awareness", this.onRemoteAwareness);
    this.stopConnect = conn.onConnect(() => this.join());
    this.stopState = conn.onState((state) => {
      if (state === "connected" || !this.synced) return;
      // until the rejoin, edits stay in the Y.Doc; the rejoin's step 2 sends them
      this.synced = false;
      this.inflight = false; // its ack may never come; the rejoin covers what it carried
      this.connection++;
      this.peers.clear();
      this.onPeers(this.peers);
      this.status();
    });
    this.renew = setInterval(() => {
      const now = Date.now();
      for (const [id, peer] of this.peers) if (now - peer.seen > AWARENESS_TIMEOUT_MS) this.peers.delete(id);
      this.onPeers(this.peers);
      if (this.synced && now - this.lastAwarenessSent > AWARENESS_RENEW_MS) this.sendAwareness();
    }, AWARENESS_RENEW_MS / 3);
  }

  status() {
    this.onStatus({ synced: this.synced, readOnly: this.readOnly, offline: this.conn.state !== "connected" });
  }

  /** Join (or rejoin) the document; resolves to true once in sync. */
  async join() {
    if (this.destroyed || this.conn.state !== "connected") return false;
    const attempt = ++this.attempt; // a newer join makes this one's outcome moot
    clearTimeout(this.retryTimer);
    const payload = { doc_id: this.docId };
    if (this.joinedOnce) payload.sync_step1 = syncStep1(this.doc); // only what we lack
    const reply = await this.conn.call("doc:join", payload);
    if (this.destroyed || attempt !== this.attempt) return false;
    if (!reply.ok) return this.joinFailed(reply.error);
    const data = reply.data;
    this.readOnly = data.read_only;
    this.clientId = data.client_id;
    readSync(this.doc, data.sync_step2);
    this.pending = []; // the answer below carries everything the server lacks
    const answer = this.readOnly ? null : readSync(this.doc, data.sync_step1);
    if (answer) {
      const sent = await this.conn.call("doc:sync", { doc_id: this.docId, message: answer });
      if (this.destroyed || attempt !== this.attempt) return false;
      if (!sent.ok) return this.joinFailed(sent.error);
    }
    this.retries = 0;
    this.joinedOnce = this.synced = true;
    this.peers = new Map(data.awareness.filter((a) => a.state !== null)
      .map((a) => [a.client_id, { user: a.user, state: a.state, seen: Date.now() }]));
    this.onPeers(this.peers);
    this.onError(null);
    this.status();
    this.sendAwareness(); // present from the start, even before the caret moves
    this.flush();
    return true;
  }

  /** A refusal is shown; a transient failure (e.g. a server going down) is retried. */
  joinFailed(error) {
    this.onError(error);
    if (!RETRYABLE.has(error.code) && error.code !== "rate_limited") {
      this.onStatus({ synced: false, readOnly: true, offline: false, refused: true });
      return false;
    }
    // while disconnected, the reconnect joins again (join() does nothing offline)
    const delay = Math.min(JOIN_RETRY_MAX_MS, 500 * 2 ** this.retries++);
    this.retryTimer = setTimeout(() => this.join(), delay);
    return false;
  }

  /** Send the pending local updates, merged, one call at a time (acked after the commit). */
  async flush() {
    if (this.inflight || !this.synced || this.readOnly || !this.pending.length) return;
    const update = this.pending.length === 1 ? this.pending[0] : Y.mergeUpdates(this.pending);
    this.pending = [];
    this.inflight = true;
    const connection = this.connection;
    const reply = await this.conn.call("doc:update", { doc_id: this.docId, update });
    if (this.destroyed || connection !== this.connection) return;
    this.inflight = false;
    if (!reply.ok) {
      this.onError(reply.error);
      // Perhaps not stored: a rejoin answers the server's state vector with all it lacks.
      if (reply.error.code === "rate_limited") {
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.join(), RATE_LIMITED_RETRY_MS);
      } else if (RETRYABLE.has(reply.error.code)) {
        this.join();
      }
      return;
    }
    this.flush();
  }

  /** My cursor/selection for the others; sent at most every 100 ms. */
  setLocalState(state) {
    this.localState = state;
    if (!this.synced || this.awarenessTimer) return;
    const wait = Math.max(0, this.lastAwarenessSent + AWARENESS_THROTTLE_MS - Date.now());
    this.awarenessTimer = setTimeout(() => {
      this.awarenessTimer = null;
      this.sendAwareness();
    }, wait);
  }

  async sendAwareness() {
    if (!this.synced) return;
    this.lastAwarenessSent = Date.now();
    await this.conn.call("doc:awareness", { doc_id: this.docId, state: this.localState });
  }

  /** Leave the document and forget it (the others see my cursor go). */
  destroy() {
    this.destroyed = true;
    clearInterval(this.renew);
    clearTimeout(this.retryTimer);
    clearTimeout(this.awarenessTimer);
    this.stopConnect();
    this.stopState();
    this.conn.off("doc:update", this.onRemoteUpdate);
    this.conn.off("doc:awareness", this.onRemoteAwareness);
    this.doc.off("update", this.onUpdate);
    if (this.synced) this.conn.call("doc:leave", { doc_id: this.docId });
    this.doc.destroy();
  }
}

/** Where `pos` goes after a change `delta` made by someone else (an insert at pos moves it). */
function transform(pos, delta) {
  let old = 0; // index in the text before the change
  let moved = pos;
  for (const op of delta) {
    if (old > pos) break;
    if (op.retain !== undefined) {
      old += op.retain;
    } else if (op.insert !== undefined) {
      if (old < pos) moved += typeof op.insert === "string" ? op.insert.length : 1;
    } else if (op.delete !== undefined) {
      moved -= Math.max(0, Math.min(op.delete, pos - old));
      old += op.delete;
    }
  }
  return moved;
}

/** The changed range between two strings: common prefix and suffix (UTF-16, pairs kept). */
function diff(before, after) {
  let start = 0;
  const max = Math.min(before.length, after.length);
  while (start < max && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  if (start > 0 && /[\uD800-\uDBFF]/.test(before[start - 1])) start--; // don't split a pair
  let end = 0;
  while (end < max - start
    && before.charCodeAt(before.length - 1 - end) === after.charCodeAt(after.length - 1 - end)) end++;
  if (end > 0 && /[\uDC00-\uDFFF]/.test(before[before.length - end])) end--;
  return { index: start, remove: before.length - start - end, insert: after.slice(start, after.length - end) };
}

// the caret may have moved (selectionchange: also a caret moved by a script or by touch)
const CARET_EVENTS = ["select", "keyup", "mouseup", "focus", "selectionchange"];

/**
 * Keep `textarea` and `provider.text` equal. Returns a function that unbinds them.
 * `onCursor(state)` receives my cursor ({anchor, head}) whenever it may have changed.
 */
export function bindTextarea(provider, textarea, onCursor = () => {}) {
  const ytext = provider.text;
  let composing = false;
  textarea.value = ytext.toString();

  const cursor = () => {
    if (document.activeElement !== textarea) return; // a value rewritten while I'm elsewhere
    // a backward selection (made from its end) has its head, the caret, at selectionStart
    const backward = textarea.selectionDirection === "backward";
    const [anchor, head] = backward ? [textarea.selectionEnd, textarea.selectionStart]
      : [textarea.selectionStart, textarea.selectionEnd];
    onCursor(cursorState(ytext, anchor, head));
  };
  const onInput = () => {
    if (composing) return; // an IME composition: wait for its end
    if (provider.readOnly) {
      textarea.value = ytext.toString();
      return;
    }
    const change = diff(ytext.toString(), textarea.value);
    if (change.remove || change.insert) {
      provider.doc.transact(() => {
        if (change.remove) ytext.delete(change.index, change.remove);
        if (change.insert) ytext.insert(change.index, change.insert);
      }, TEXTAREA);
    }
    cursor();
  };
  const onCompositionStart = () => { composing = true; };
  const onCompositionEnd = () => { composing = false; onInput(); };
  const observer = (event, transaction) => {
    if (transaction.origin === TEXTAREA) return;
    const focused = document.activeElement === textarea;
    const { selectionStart, selectionEnd, selectionDirection } = textarea;
    textarea.value = ytext.toString();
    if (focused) {
      textarea.setSelectionRange(transform(selectionStart, event.delta),
        transform(selectionEnd, event.delta), selectionDirection);
      cursor();
    }
  };
  ytext.observe(observer);
  textarea.addEventListener("input", onInput);
  textarea.addEventListener("compositionstart", onCompositionStart);
  textarea.addEventListener("compositionend", onCompositionEnd);
  for (const name of CARET_EVENTS) textarea.addEventListener(name, cursor);
  return () => {
    ytext.unobserve(observer);
    textarea.removeEventListener("input", onInput);
    textarea.removeEventListener("compositionstart", onCompositionStart);
    textarea.removeEventListener("compositionend", onCompositionEnd);
    for (const name of CARET_EVENTS) textarea.removeEventListener(name, cursor);
  };
}

/** "line 2, column 5" for an index into text. */
function lineColumn(text, index) {
  const before = text.slice(0, Math.max(0, Math.min(index, text.length)));
  const lines = before.split("\n");
  return `line ${lines.length}, column ${lines[lines.length - 1].length + 1}`;
}

/** The page's Document panel: a doc id, a textarea, who else is here and where. */
export function startEditor(conn) {
  const form = $("doc-form");
  const idInput = $("doc-id");
  const textarea = $("doc-text");
  const mode = $("doc-mode");
  const peersEl = $("doc-peers");
  const error = $("doc-error");
  let provider = null;
  let overlay = null; // the others' cursors over the text
  let unbind = () => {};

  const renderStatus = ({ synced, readOnly, offline, refused }) => {
    textarea.readOnly = readOnly || !synced && !provider?.joinedOnce;
    textarea.setAttribute("aria-readonly", String(textarea.readOnly));
    textarea.classList.toggle("read-only", readOnly);
    const id = provider.docId;
    if (offline) mode.textContent = readOnly ? `${id}: offline` : `${id}: offline, your edits will be sent on reconnect`;
    else if (refused) mode.textContent = `${id}: not open`;
    else if (!synced) mode.textContent = `${id}: joining…`;
    else mode.textContent = readOnly ? `${id}: read-only (you may read, not edit)` : `${id}: editing`;
    mode.dataset.mode = refused ? "refused" : !synced ? "joining" : readOnly ? "read-only" : "editing";
  };

  let listed = ""; // what the list shows now: unchanged, it is not rebuilt (nor re-announced)
  const renderPeers = (peers) => {
    overlay?.render(peers);
    const text = provider ? provider.text.toString() : "";
    const rows = [...peers].slice(0, MAX_DRAWN).map(([clientId, peer]) => {
      const at = provider ? resolveCursor(peer.state, provider.text) : null;
      return { clientId, peer, where: at ? ` at ${lineColumn(text, at.head)}` : "" };
    });
    const key = JSON.stringify([peers.size, rows.map((r) => [r.clientId, r.peer.user, r.where])]);
    if (key === listed) return;
    listed = key;
    clear(peersEl);
    for (const { clientId, peer, where } of rows) {
      const name = peer.user.name || peer.user.user_id;
      const color = colorOf(peer.user.user_id);
      const swatch = h("span", { class: "doc-swatch", "aria-hidden": "true" });
      swatch.style.background = color; // through the CSSOM: the page's CSP refuses style attributes
      peersEl.append(h("li", { dataset: { clientId, userId: peer.user.user_id, color } }, swatch,
        h("strong", {}, name), where ? h("span", { class: "muted" }, where) : null));
    }
    if (peers.size > MAX_DRAWN) peersEl.append(h("li", { class: "doc-more muted" }, `+${peers.size - MAX_DRAWN} more`));
  };

  const open = (docId) => {
    if (provider) provider.destroy();
    unbind();
    overlay?.destroy();
    showError(error, null);
    provider = new DocProvider(conn, docId, {
      onStatus: renderStatus,
      onPeers: renderPeers,
      onError: (err) => showError(error, err),
    });
    overlay = cursorOverlay(textarea, provider.text);
    unbind = bindTextarea(provider, textarea, (state) => provider.setLocalState(state));
    provider.text.observe(() => renderPeers(provider.peers)); // positions read as line/column
    provider.status();
    window.dihya.editor = provider; // for the console and the end-to-end tests
    provider.join();
  };

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const docId = idInput.value.trim();
    if (docId) open(docId);
  });
}
