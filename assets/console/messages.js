// Messages: the message log with filters, and one message's whole story.

import { get, post, query } from "./api.js";
import { h, replace, safeLink, statusChip, time, field, select, errorBox } from "./dom.js";

const PAGE = 50;
const STATUSES = ["pending", "sending", "retry", "sent", "delivered", "failed", "received", "scheduled", "canceled"];
const state = { status: "", type: "", direction: "", since: "", until: "", offset: 0 };

/** A datetime-local value as a Date, or null. */
function localDate(v) {
  if (!v) return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

export function mountList() {
  const statusSel = select("status", [["", "any status"], ...STATUSES.map((s) => [s, s])], state.status);
  const typeSel = select("type", [["", "any type"], ["sms", "sms"], ["mms", "mms"], ["email", "email"]], state.type);
  const dirSel = select("direction", [["", "any direction"], ["outbound", "outbound"], ["inbound", "inbound"]], state.direction);
  const since = h("input", { type: "datetime-local", name: "since", value: state.since, step: 1 });
  const until = h("input", { type: "datetime-local", name: "until", value: state.until, step: 1 });
  const form = h(
    "form.filters",
    { "aria-label": "Filter messages" },
    field("Status", statusSel),
    field("Type", typeSel),
    field("Direction", dirSel),
    field("From time", since),
    field("Until time", until),
    h("div.actions", {}, h("button", { type: "submit" }, "Filter")),
  );
  const note = h("p.muted.small", {}, "The API filters by status, type and direction; it has no time filter, so the time range is applied here, to the page shown.");
  const summary = h("p.muted", { role: "status" });
  const tbody = h("tbody");
  const table = h(
    "table.log",
    {},
    h("caption.visually-hidden", {}, "Messages, newest first"),
    h("thead", {}, h("tr", {}, ["Time", "Type", "Direction", "From", "To", "Status", "Body", ""].map((t) => h("th", { scope: "col" }, t)))),
    tbody,
  );
  const prev = h("button.secondary", { type: "button" }, "← Newer");
  const next = h("button.secondary", { type: "button" }, "Older →");
  const error = h("div");
  const element = h("section.pane", { "aria-labelledby": "messages-title" },
    h("h1", { id: "messages-title" }, "Messages"), form, note, error, summary,
    h("div.table-wrap", {}, table), h("div.actions.pager", {}, prev, next));

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    Object.assign(state, { status: statusSel.value, type: typeSel.value, direction: dirSel.value, since: since.value, until: until.value, offset: 0 });
    refresh().catch(() => {});
  });
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh().catch(() => {}); });
  next.addEventListener("click", () => { state.offset += PAGE; refresh().catch(() => {}); });

  let last = "";
  async function refresh() {
    let res;
    try {
      res = await get(`/api/v1/messages${query({ status: state.status, type: state.type, direction: state.direction, limit: PAGE, offset: state.offset })}`);
      replace(error);
    } catch (e) {
      replace(error, errorBox(e.message));
      throw e;
    }
    const from = localDate(state.since);
    const to = localDate(state.until);
    const rows = res.messages.filter((m) => {
      const t = new Date(m.created_at);
      return (!from || t >= from) && (!to || t <= to);
    });
    const key = JSON.stringify([rows, res.total, state]);
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + PAGE >= res.total;
    if (key === last) return;
    last = key;
    const shown = res.messages.length ? `${state.offset + 1}–${state.offset + res.messages.length} of ${res.total}` : `0 of ${res.total}`;
    summary.textContent = `Messages ${shown}` + (from || to ? `; ${rows.length} of this page in the time range` : "");
    replace(tbody, rows.length ? rows.map(row) : h("tr", {}, h("td", { colspan: 8 }, "No messages.")));
  }
  return { title: "Messages", element, refresh };
}

function excerpt(m) {
  const text = m.subject ? `${m.subject} — ${m.body || ""}` : m.body || (m.attachments.length ? `(${m.attachments.length} attachment${m.attachments.length === 1 ? "" : "s"})` : "");
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

function row(m) {
  return h(
    "tr",
    { "data-id": m.id },
    h("td", {}, time(m.created_at)),
    h("td", {}, m.type),
    h("td", {}, m.direction),
    h("td.addr", {}, m.from),
    h("td.addr", {}, m.to),
    h("td", {}, statusChip(m.status)),
    h("td.excerpt", {}, excerpt(m)),
    h("td", {}, h("a", { href: `#/messages/${m.id}`, "data-key": m.id }, "Open")),
  );
}

/** A "Retry" button for a failed message; `done` gets the redriven message. */
export function retryButton(m, statusEl, done) {
  const button = h("button", { type: "button", "data-key": `retry-${m.id}` }, "Retry");
  button.addEventListener("click", async () => {
    button.disabled = true;
    statusEl.textContent = "Retrying…";
    try {
      const again = await post(`/api/v1/messages/${m.id}/retry`);
      statusEl.textContent = `Back in line: ${again.status}.`;
      if (done) await done(again);
    } catch (e) {
      statusEl.textContent = `Retry refused: ${e.message}`;
      button.disabled = false;
    }
  });
  return button;
}

export function mountOne(id) {
  const details = h("div.details");
  const actionStatus = h("p.small", { role: "status", "aria-live": "polite" });
  const actions = h("div.actions");
  const timeline = h("ol.timeline", { "aria-label": "Events, oldest first" });
  const error = h("div");
  const element = h("section.pane", { "aria-labelledby": "message-title" },
    h("p.back", {}, h("a", { href: "#/messages" }, "← Message log")),
    h("h1", { id: "message-title" }, "Message"),
    error, details, actions, actionStatus,
    h("h2", {}, "Timeline"), timeline);
  let last = "";

  async function refresh() {
    let m;
    let events;
    try {
      [m, events] = await Promise.all([get(`/api/v1/messages/${id}`), get(`/api/v1/messages/${id}/events`)]);
      replace(error);
    } catch (e) {
      replace(error, errorBox(e.status === 404 ? "No such message." : e.message));
      throw e;
    }
    const key = JSON.stringify([m, events]);
    if (key === last) return;
    last = key;
    const dl = (pairs) => h("dl.props", {}, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    replace(
      details,
      dl([
        ["Status", statusChip(m.status)],
        ["Id", h("code", {}, m.id)],
        ["Conversation", h("a", { href: `#/inbox/${m.conversation_id}` }, m.conversation_id)],
        ["Type", `${m.type}, ${m.direction}`],
        ["From", m.from],
        ["To", m.to],
        ["Provider", m.provider || "—"],
        ["Provider id", m.provider_message_id ? h("code", {}, m.provider_message_id) : "—"],
        m.num_segments !== null && m.num_segments !== undefined ? ["Segments", String(m.num_segments)] : null,
        ["Retries", String(m.retry_count)],
        ["Error code", m.error ? h("code", {}, m.error.code) : "—"],
        ["Error", m.error ? m.error.message : "—"],
        ["Created", time(m.created_at)],
        ["Sent", time(m.sent_at)],
        ["Delivered", time(m.delivered_at)],
        ["Failed", time(m.failed_at)],
        m.next_attempt_at ? ["Next attempt", time(m.next_attempt_at)] : null,
        m.subject ? ["Subject", m.subject] : null,
      ]),
      h("h2", {}, "Body"),
      h("pre.body", {}, m.body || "(no body)"),
      m.attachments.length ? [h("h2", {}, "Attachments"), h("ul.attachments", {}, m.attachments.map((u) => h("li", {}, safeLink(u))))] : null,
    );
    replace(actions, m.status === "failed" ? retryButton(m, actionStatus, () => refresh()) : null);
    replace(
      timeline,
      events.events.length
        ? events.events.map((e) =>
          h(
            "li",
            {},
            h("div.when", {}, time(e.created_at)),
            h("div.what", {}, h("strong", {}, e.event), e.to_status ? h("span", {}, ` ${e.from_status || "·"} → `, statusChip(e.to_status)) : null),
            e.detail && Object.keys(e.detail).length ? h("code.detail", {}, JSON.stringify(e.detail)) : null,
          ))
        : h("li.muted", {}, "No events."),
    );
  }
  return { title: "Message", element, refresh };
}
