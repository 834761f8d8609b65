// Web Push in the demo: reach this user when every tab is closed (docs/notifications.md).
// Permission is asked from a button, never on load (browsers penalise pages that ask
// unprompted, and users deny them). Then: register the service worker (/sw.js, root scope),
// fetch the server's VAPID key, subscribe with the browser's PushManager and hand the
// subscription to the server (`push:subscribe`). A click on a shown push comes back here as
// a message from the service worker (or opens a new tab) and opens the room or item.
import { $ } from "./dom.js";

const STATUS = {
  unsupported: "Push is not supported by this browser",
  denied: "Notifications are blocked for this site",
  off: "Push is not configured on this server",
  on: "Push is on for this browser",
};

// "/#room=ID" opens the room (through the join form, as a user would); "/#notification=ID"
// opens the bell. Anything else is left to the browser.
export function openTarget(url) {
  const target = new URL(url, location.origin);
  if (target.origin !== location.origin) return;
  const params = new URLSearchParams(target.hash.slice(1));
  if (params.get("room")) {
    $("join-room-id").value = params.get("room");
    $("join-room").requestSubmit();
  } else if (params.get("notification")) {
    $("bell").click();
  } else if (target.pathname !== location.pathname) {
    location.assign(target.href);
  }
}

async function vapidKey() {
  const response = await fetch("/api/v1/push/vapid-key");
  if (!response.ok) return null;
  return (await response.json()).data.public_key;
}

// The whole subscribe flow; returns the status key it ended in. Exported for the tests.
export async function enablePush(conn) {
  const permission = await Notification.requestPermission();
  if (permission !== "granted") return "denied";
  const key = await vapidKey();
  if (!key) return "off";
  const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  await navigator.serviceWorker.ready;
  let subscription = await registration.pushManager.getSubscription();
  if (!subscription) {
    subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: key });
  }
  const reply = await conn.call("push:subscribe", { subscription: subscription.toJSON() });
  if (!reply.ok) throw new Error(reply.error.message);
  return "on";
}

export function startPush(conn) {
  const button = $("push-enable");
  const status = $("push-status");
  const show = (key, text) => {
    status.dataset.state = key;
    status.textContent = text || STATUS[key];
  };
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    show("unsupported");
    return;
  }
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data && event.data.type === "push-open") openTarget(event.data.url);
  });
  if (location.hash) conn.onConnect(({ reconnect }) => { if (!reconnect) openTarget(location.href); });
  if (Notification.permission === "denied") show("denied");
  button.hidden = false;
  button.onclick = async () => {
    button.disabled = true;
    try {
      show(await enablePush(conn));
    } catch (err) {
      show("error", `Push failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  };
}
