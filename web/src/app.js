// The dihya-realtime demo: sign in, then chat, notifications, live updates and a shared
// document over one
// standard socket.io-client connection. A reference for front-end teams: see docs/web-client.md.
import "./app.css";
import { startBanner } from "./banner.js";
import { Channels } from "./channels.js";
import { startChat } from "./chat.js";
import { startEditor } from "./collab.js";
import { Connection } from "./connection.js";
import { $ } from "./dom.js";
import { startLayout } from "./layout.js";
import { startLive } from "./live.js";
import { startNotifications } from "./notifications.js";
import { startPush } from "./push.js";
import { claimsOf, clearSession, devSignIn, loadSession, renew, saveSession } from "./session.js";

const config = JSON.parse($("dihya-config").textContent);
const RENEW_BEFORE_S = 60;

async function start(session) {
  $("signin").hidden = true;
  $("main").hidden = false;
  $("who").hidden = false;
  const claims = claimsOf(session.token);
  $("who-name").textContent = claims.name || claims.sub;
  $("who-roles").textContent = `(${(claims.roles || []).join(", ") || "no roles"})`;

  const conn = new Connection(session.token, () => renew(loadSession()).catch(() => null));
  startBanner(conn);
  const channels = new Channels(conn);
  if (config.features.chat) startChat(conn, channels, claims.sub);
  else $("main").classList.add("no-chat");
  if (config.features.notifications) {
    startNotifications(conn);
    startPush(conn);
  } else $("bell").hidden = true;
  if (config.features.docs) startEditor(conn);
  else $("doc-panel").hidden = true;
  startLayout();
  conn.onConnect(({ reconnect }) => {
    if (!reconnect) startLive(conn, channels, config.live_channel);
  });
  $("sign-out").onclick = () => {
    conn.stop();
    clearSession();
    location.reload();
  };
  window.dihya = { conn, channels }; // for the console and the end-to-end tests
  conn.start();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const error = $("signin-error");
  error.textContent = "";
  try {
    let session;
    if (config.dev) {
      const roles = [...form.querySelectorAll("input[name=roles]:checked")].map((i) => i.value);
      session = await devSignIn(form.user.value.trim(), roles);
    } else {
      session = { token: form.token.value.trim(), dev: false };
    }
    saveSession(session);
    start(session);
  } catch (err) {
    error.textContent = err.message;
  }
}

async function main() {
  $("signin-form").addEventListener("submit", signIn);
  for (const button of document.querySelectorAll("#quick-users button")) {
    button.addEventListener("click", () => {
      const form = $("signin-form");
      form.user.value = button.dataset.user;
      const roles = button.dataset.roles.split(",");
      for (const box of form.querySelectorAll("input[name=roles]")) box.checked = roles.includes(box.value);
      form.requestSubmit();
    });
  }
  let session = loadSession();
  if (session && session.dev && !config.dev) session = null;
  if (session && session.dev && session.expires_at - Date.now() / 1000 < RENEW_BEFORE_S) {
    // an old dev token: mint a new one for the same user rather than fail the handshake
    session = await devSignIn(session.user_id, session.roles).catch(() => null);
    if (session) saveSession(session);
  }
  if (session) start(session);
  else $("signin-user")?.focus();
}

main();
