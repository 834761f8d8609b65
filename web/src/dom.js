// Tiny DOM helpers. User content only ever goes through textContent (never innerHTML),
// so a message like "<img onerror=…>" is shown, not run.

export const $ = (id) => document.getElementById(id);

/** h("li", {class: "x", dataset: {id: 1}, onclick: fn}, "text", child) → an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

export function showError(el, error) {
  el.textContent = error ? `${error.code}: ${error.message}` : "";
}

export function formatTime(ts) {
  const d = new Date(typeof ts === "number" ? ts * 1000 : ts);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString();
}

/** "just now", "2 min ago", "3 h ago", "yesterday", then a date: for lists that age. */
export function relativeTime(ts, now = Date.now()) {
  const d = new Date(typeof ts === "number" ? ts * 1000 : ts);
  if (Number.isNaN(d.getTime())) return "";
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 2 * 86400) return "yesterday";
  return d.toLocaleDateString();
}

/** The full date and time, for a title (hover) and a <time datetime>. */
export function fullTime(ts) {
  const d = new Date(typeof ts === "number" ? ts * 1000 : ts);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleString();
}

/** A <time> that shows a relative time and the full one on hover; `refreshTimes` updates it. */
export function timeAgo(ts) {
  const d = new Date(typeof ts === "number" ? ts * 1000 : ts);
  const iso = Number.isNaN(d.getTime()) ? "" : d.toISOString();
  return h("time", { class: "muted ago", datetime: iso, title: fullTime(ts) }, relativeTime(ts));
}

/** Re-render every `timeAgo` under root (call it every minute). */
export function refreshTimes(root) {
  for (const el of root.querySelectorAll("time.ago[datetime]")) {
    el.textContent = relativeTime(el.getAttribute("datetime"));
  }
}
