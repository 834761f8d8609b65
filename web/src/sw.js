// The demo's service worker (served at /sw.js, scope "/"): shows a Web Push and, on a click,
// brings a tab of the demo forward and tells it what to open (push.js), or opens one.
// The payload is {title, body, url, notification_id, category}: the notification id is the
// shown notification's tag, so a push delivered twice replaces itself instead of stacking.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { title: event.data.text() };
  }
  event.waitUntil(self.registration.showNotification(data.title || "New notification", {
    body: data.body || "",
    tag: data.notification_id || undefined,
    data: { url: data.url || "/" },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL((event.notification.data && event.notification.data.url) || "/",
    self.location.origin);
  event.waitUntil((async () => {
    if (url.origin === self.location.origin) {
      const tabs = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const tab of tabs) {
        if (new URL(tab.url).origin !== self.location.origin) continue;
        await tab.focus();
        tab.postMessage({ type: "push-open", url: url.href });
        return;
      }
    }
    await self.clients.openWindow(url.href);
  })());
});
