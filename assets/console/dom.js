// DOM helpers. Every piece of data reaches the page through textContent or an attribute
// set one by one; nothing is ever parsed as HTML.

/** h("a.link", {href: "#/x"}, "text", child) builds an element. */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`, keeping focus on the element with the same data-key. */
export function replace(el, ...children) {
  const focused = document.activeElement;
  const key = focused && el.contains(focused) ? focused.dataset.key : undefined;
  el.replaceChildren();
  append(el, children);
  if (key !== undefined) {
    const again = el.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

/** A link only for http(s) URLs; anything else is shown as text. */
export function safeLink(url, text) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return h("span", {}, text || url);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return h("span", {}, text || url);
  }
  return h("a", { href: parsed.href, rel: "noopener noreferrer", target: "_blank" }, text || url);
}

export function statusChip(status) {
  return h(`span.chip.status-${String(status).replace(/[^a-z_]/g, "")}`, {}, status);
}

export function time(iso) {
  if (!iso) return h("span.muted", {}, "—");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h("span", {}, iso);
  return h("time", { datetime: iso, title: d.toISOString() }, formatTime(d));
}

export function formatTime(d) {
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** A <label> and its control, tied by id. */
export function field(label, control) {
  if (!control.id) control.id = `f-${Math.random().toString(36).slice(2, 10)}`;
  return h("div.field", {}, h("label", { for: control.id }, label), control);
}

export function select(name, options, value) {
  const el = h("select", { name });
  for (const [v, text] of options) {
    const opt = h("option", { value: v }, text);
    if (v === value) opt.selected = true;
    el.appendChild(opt);
  }
  return el;
}

export function errorBox(message) {
  return h("p.error", { role: "alert" }, message);
}
