// The admin console (/admin): live connections by user and process, channels with their
// subscribers and presence, the audit trail (filters, `audit verify`), disconnecting a user and
// the serving process's last hour of metrics. Every call is a Socket.IO `admin:*` event on one
// connection authenticated like any other (docs/admin.md); a token without the `admin:read`
// permission is refused (`forbidden`) and the page says so. Kept apart from the demo's session
// (its own storage key), so signing in here never changes who you are on `/`.
import "./admin.css";
import { createClient } from "dihya-realtime-client";
import { envelope } from "./connection.js";
import { $, h } from "./dom.js";
import { claimsOf, clearSession, devSignIn, loadSession, saveSession } from "./session.js";

const KEY = "dihya-admin-session";
const REFRESH_MS = 5000;
const config = JSON.parse(document.getElementById("admin-config").textContent);

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

const time = (ts) => new Date(ts * 1000).toLocaleTimeString();
const dateTime = (ts) => new Date(ts * 1000).toLocaleString();

// -- the console
class Console {
  constructor(session) {
    this.session = session;
    this.channelsOffset = 0;
    this.channelsPage = 50;
    this.auditFilters = {};
    this.auditBefore = null;
    this.timer = null;
    this.rt = createClient(undefined, {
      autoConnect: false,
      getToken: async (reason) => {
        if (reason !== "connect" && this.session.dev) {
          const fresh = await devSignIn(this.session.user_id, this.session.roles).catch(() => null);
          if (fresh) {
            this.session = fresh;
            saveSession(fresh, KEY);
          }
        }
        return this.session.token;
      },
    });
  }

  call(event, payload = {}) {
    return envelope(this.rt.call(event, payload));
  }

  start() {
    this.rt.onState((state, detail) => {
      const el = $("conn-state");
      el.dataset.state = state;
      el.textContent = detail ? `${state} (${detail})` : state;
    });
    this.rt.onConnect(() => this.refreshAll());
    this.rt.connect();
  }

  stop() {
    clearTimeout(this.timer);
    this.rt.close();
  }

  userId() {
    return this.session.user_id || claimsOf(this.session.token).sub;
  }

  /** The first refused call decides: this account is no administrator. */
  refused(reply) {
    if (reply.ok || reply.error.code !== "forbidden") return false;
    clearTimeout(this.timer);
    $("console").hidden = true;
    $("refused").hidden = false;
    $("refused-text").textContent =
      `This account (${this.userId()}) may not use ` +
      `the admin console: ${reply.error.message}. Sign in with the admin role.`;
    return true;
  }

  async refreshAll() {
    clearTimeout(this.timer);
    const metrics = await this.call("admin:metrics");
    if (this.refused(metrics)) return;
    $("console").hidden = false;
    this.showMetrics(metrics);
    await this.refreshLive();
    await this.loadAudit(true);
  }

  async refreshLive() {
    clearTimeout(this.timer);
    const userId = $("conns-user").value.trim();
    const [conns, channels, metrics] = await Promise.all([
      this.call("admin:connections", userId ? { user_id: userId } : {}),
      this.call("admin:channels", { offset: this.channelsOffset, limit: this.channelsPage }),
      this.call("admin:metrics"),
    ]);
    if (this.refused(conns)) return;
    this.showConnections(conns);
    this.showChannels(channels);
    this.showMetrics(metrics);
    this.timer = setTimeout(() => this.refreshLive(), REFRESH_MS);
  }

  showMetrics(reply) {
    if (!reply.ok) {
      $("metrics-process").textContent = `${reply.error.code}: ${reply.error.message}`;
      return;
    }
    const m = reply.data;
    $("metrics-process").textContent = `process ${m.host} pid ${m.pid} (the one serving this page)`;
    $("m-connections").textContent = m.current.connections;
    const last = m.samples.length ? m.samples[m.samples.length - 1] : m.current;
    $("m-events").textContent = last.events_per_s;
    $("m-publications").textContent = last.publications_per_s;
    $("m-errors").textContent = m.current.errors;
    $("metrics-empty").hidden = m.samples.length > 0;
    fill($("metrics-table").tBodies[0], [...m.samples].reverse().map((s) => h("tr", {},
      h("td", {}, time(s.at)), h("td", {}, s.connections), h("td", {}, s.events),
      h("td", {}, s.errors), h("td", {}, s.publications))));
  }

  showConnections(reply) {
    if (!reply.ok) {
      $("conns-summary").textContent = `${reply.error.code}: ${reply.error.message}`;
      return;
    }
    const { processes, users, clustered } = reply.data;
    const total = processes.reduce((n, p) => n + p.connection_count, 0);
    $("conns-summary").textContent = `${total} connections, ${users.length} users, ` +
      `${processes.length} ${processes.length === 1 ? "process" : "processes"}` +
      (clustered ? " answered" : "");
    fill($("users-table").tBodies[0], users.map((u) => h("tr", { dataset: { user: u.user_id } },
      h("th", { scope: "row" }, u.user_id), h("td", { class: "wide-only" }, u.name || ""),
      h("td", {}, u.connections), h("td", {}, u.processes),
      h("td", {}, u.user_id === this.userId() ? h("span", { class: "muted" }, "you")
        : h("button", { type: "button", class: "danger", "aria-label": `Disconnect ${u.user_id}`,
                        onclick: () => this.disconnect(u.user_id) }, "Disconnect")))));
    $("processes").replaceChildren(...processes.map((p, i) => {
      const caption = `${p.host} pid ${p.pid}${i === 0 ? " (serving this page)" : ""}: ` +
        `${p.connection_count} connections${p.truncated ? ", the oldest listed" : ""}`;
      return h("div", { class: "table-wrap", tabindex: "0", role: "region",
                        "aria-label": `Connections on ${p.host} pid ${p.pid}` },
        h("table", { class: "data process", dataset: { node: p.node } },
          h("caption", {}, caption),
          h("thead", {}, h("tr", {}, ["User", "Connection", "Address", "Since", "Channels"]
            .map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, p.connections.map((c) => h("tr", { dataset: { sid: c.sid } },
            h("th", { scope: "row" }, c.user_id), h("td", { class: "mono" }, c.sid),
            h("td", {}, c.remote_addr || ""), h("td", { title: dateTime(c.connected_at) },
              time(c.connected_at)), h("td", {}, c.channels))))));
    }));
  }

  showChannels(reply) {
    if (!reply.ok) {
      $("channels-summary").textContent = `${reply.error.code}: ${reply.error.message}`;
      return;
    }
    const { channels, total, truncated } = reply.data;
    const first = total ? this.channelsOffset + 1 : 0;
    $("channels-summary").textContent = `${first}–${this.channelsOffset + channels.length} ` +
      `of ${total} channels${truncated ? " (some processes list only their busiest)" : ""}`;
    fill($("channels-table").tBodies[0], channels.map((c) => h("tr", {},
      h("th", { scope: "row", class: "mono" }, c.channel), h("td", {}, c.subscribers),
      h("td", {}, c.processes),
      h("td", {}, c.presence === null ? h("span", { class: "muted" }, "no presence")
        : `${c.presence_count}: ${c.presence.map((m) => m.name || m.user_id).join(", ")}`))));
    $("channels-prev").disabled = this.channelsOffset === 0;
    $("channels-next").disabled = this.channelsOffset + channels.length >= total;
  }

  async disconnect(userId) {
    const status = $("action-status");
    status.textContent = `Disconnecting ${userId}…`;
    const reply = await this.call("admin:disconnect_user", { user_id: userId });
    if (this.refused(reply)) return;
    status.textContent = reply.ok ? `Disconnected ${userId} on every process.`
      : `Could not disconnect ${userId}: ${reply.error.code}: ${reply.error.message}`;
    await this.refreshLive();
  }

  async loadAudit(fresh) {
    if (fresh) this.auditBefore = null;
    const payload = { ...this.auditFilters, limit: 50 };
    if (this.auditBefore) payload.before_id = this.auditBefore;
    const reply = await this.call("admin:audit", payload);
    if (this.refused(reply)) return;
    const tbody = $("audit-table").tBodies[0];
    $("audit-error").textContent = reply.ok ? "" : `${reply.error.code}: ${reply.error.message}`;
    if (!reply.ok) return;
    const rows = reply.data.rows.map((r) => h("tr", {},
      h("td", {}, r.id), h("td", { title: dateTime(r.ts) }, time(r.ts)), h("td", {}, r.type),
      h("td", {}, r.user_id || ""), h("td", {}, r.event || ""), h("td", {}, r.outcome || ""),
      h("td", { class: "mono details" }, r.details ? JSON.stringify(r.details) : "")));
    if (fresh) fill(tbody, rows);
    else tbody.append(...rows);
    this.auditBefore = reply.data.next_before_id;
    $("audit-more").disabled = !this.auditBefore;
  }

  async verify() {
    const status = $("verify-status");
    status.dataset.ok = "";
    status.textContent = "Verifying…";
    const reply = await this.call("admin:audit_verify");
    if (this.refused(reply)) return;
    if (!reply.ok) {
      status.textContent = `${reply.error.code}: ${reply.error.message}`;
      return;
    }
    const v = reply.data;
    status.dataset.ok = String(v.ok);
    status.textContent = v.ok ? `Intact and complete: ${v.rows} rows.`
      : `Not verified: ${v.reason}`;
  }

  wire() {
    $("refresh").onclick = () => this.refreshLive();
    $("conns-filter").onsubmit = (event) => {
      event.preventDefault();
      this.refreshLive();
    };
    $("channels-prev").onclick = () => {
      this.channelsOffset = Math.max(0, this.channelsOffset - this.channelsPage);
      this.refreshLive();
    };
    $("channels-next").onclick = () => {
      this.channelsOffset += this.channelsPage;
      this.refreshLive();
    };
    $("audit-filter").onsubmit = (event) => {
      event.preventDefault();
      const form = event.target;
      this.auditFilters = {};
      for (const name of ["type", "user_id", "outcome", "event"]) {
        const value = form.elements[name].value.trim();
        if (value) this.auditFilters[name] = value;
      }
      this.loadAudit(true);
    };
    $("audit-more").onclick = () => this.loadAudit(false);
    $("audit-verify").onclick = () => this.verify();
  }
}

function begin(session) {
  $("signin").hidden = true;
  $("who").hidden = false;
  const claims = claimsOf(session.token);
  $("who-name").textContent = claims.name || claims.sub || "?";
  $("who-roles").textContent = `(${(claims.roles || []).join(", ") || "no roles"})`;
  const admin = new Console(session);
  admin.wire();
  $("sign-out").onclick = () => {
    admin.stop();
    clearSession(KEY);
    location.reload();
  };
  window.dihyaAdmin = admin; // for the console and the end-to-end tests
  admin.start();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  $("signin-error").textContent = "";
  try {
    let session;
    if (config.dev) {
      const roles = [...form.querySelectorAll("input[name=roles]:checked")].map((i) => i.value);
      session = await devSignIn(form.user.value.trim(), roles);
    } else {
      session = { token: form.token.value.trim(), dev: false };
    }
    saveSession(session, KEY);
    begin(session);
  } catch (err) {
    $("signin-error").textContent = err.message;
  }
}

async function main() {
  $("signin-form").addEventListener("submit", signIn);
  let session = loadSession(KEY);
  if (session && session.dev && !config.dev) session = null;
  if (session && session.dev && session.expires_at - Date.now() / 1000 < 60) {
    session = await devSignIn(session.user_id, session.roles).catch(() => null);
    if (session) saveSession(session, KEY);
  }
  if (session) begin(session);
  else {
    $("signin").hidden = false;
    $("signin-user")?.focus();
  }
}

main();
