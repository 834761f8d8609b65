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
