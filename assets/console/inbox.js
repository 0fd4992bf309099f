// Inbox: conversations (most recent activity first), search, filters, and one
// conversation's thread with its composer.

import { get, post, patch, query, ApiFailure } from "./api.js";
import { h, replace, safeLink, statusChip, time, field, select, errorBox } from "./dom.js";
import { countSegments } from "./segments.js";

/** The newest messages shown in a thread. */
const THREAD_LIMIT = 100;
/** The longest sms/mms body the API accepts. */
const SMS_MAX_CHARS = 1600;

// Kept across visits, so opening a conversation keeps the search and the filters.
const state = { query: "", status: "", channel: "", participant: "" };

export function mount(conversationId) {
  const listEl = h("ul.conversations", { "aria-label": "Conversations" });
  const summary = h("p.muted.summary", { role: "status" });
  const searchInput = h("input", { type: "search", name: "q", value: state.query, placeholder: "words, a number or an address" });
  const searchForm = h(
    "form.search",
    { role: "search", "aria-label": "Search conversations" },
    field("Search messages", searchInput),
    h("div.actions", {}, h("button", { type: "submit" }, "Search"), h("button.secondary", { type: "button", onclick: clearSearch }, "Clear")),
  );
  const statusSel = select("status", [["", "any status"], ["active", "active"], ["archived", "archived"], ["closed", "closed"]], state.status);
  const channelSel = select("channel", [["", "any channel"], ["phone", "phone (sms/mms)"], ["email", "email"]], state.channel);
  const participantInput = h("input", { type: "text", name: "participant", value: state.participant, placeholder: "+15551234567 or a@b.com" });
  const filterForm = h(
    "form.filters",
    { "aria-label": "Filter conversations" },
    field("Status", statusSel),
    field("Channel", channelSel),
    field("Participant", participantInput),
    h("div.actions", {}, h("button", { type: "submit" }, "Filter")),
  );
  const listError = h("div");
  const listPane = h("section.pane.list-pane", { "aria-labelledby": "inbox-title" },
    h("h1", { id: "inbox-title" }, "Inbox"), searchForm, filterForm, listError, summary, listEl);

  // A change made in the thread (read, archive, a reply) shows in the list at once.
  const thread = conversationId ? threadView(conversationId, () => refreshList().catch(() => {})) : null;
  const threadPane = thread
    ? thread.element
    : h("section.pane.thread-pane.empty", { "aria-label": "Conversation" }, h("p.muted", {}, "Select a conversation to read its thread."));
  const element = h(`div.inbox${thread ? ".has-thread" : ""}`, {}, listPane, threadPane);

  let lastList = "";
  async function refreshList() {
    let rows;
    let note;
    try {
      if (state.query) {
        const res = await post("/api/v1/conversations/search", { query: state.query, limit: 50 });
        rows = res.conversations.filter(
          (c) =>
            (!state.status || c.status === state.status) &&
            (!state.channel || c.channel === state.channel) &&
            (!state.participant || c.participants.some((p) => p.includes(state.participant))),
        );
        note = `${rows.length} conversation${rows.length === 1 ? "" : "s"} match “${res.query}”, best match first` +
          (state.status || state.channel || state.participant ? " (filters applied to the search results)" : "");
      } else {
        const res = await get(`/api/v1/conversations${query({ status: state.status, channel: state.channel, participant: state.participant, limit: 100 })}`);
        rows = res.conversations;
        note = `${res.total} conversation${res.total === 1 ? "" : "s"}, most recent activity first` +
          (res.total > rows.length ? ` (showing the first ${rows.length})` : "");
      }
      replace(listError);
    } catch (e) {
      replace(listError, errorBox(e.message));
      throw e;
    }
    const key = JSON.stringify([note, rows, conversationId]);
    if (key === lastList) return;
    lastList = key;
    summary.textContent = note;
    replace(listEl, rows.length ? rows.map((c) => conversationItem(c, conversationId)) : h("li.muted", {}, "No conversations."));
  }

  function clearSearch() {
    searchInput.value = "";
    state.query = "";
    refreshList().catch(() => {});
  }
  searchForm.addEventListener("submit", (e) => {
    e.preventDefault();
    state.query = searchInput.value.trim();
    refreshList().catch(() => {});
  });
  filterForm.addEventListener("submit", (e) => {
    e.preventDefault();
    state.status = statusSel.value;
    state.channel = channelSel.value;
    state.participant = participantInput.value.trim();
    refreshList().catch(() => {});
  });

  return {
    title: "Inbox",
    element,
    async refresh() {
      await Promise.all([refreshList(), thread ? thread.refresh() : null]);
    },
  };
}

function conversationItem(c, selectedId) {
  const who = c.participants.join(" ↔ ");
  return h(
    "li",
    {},
    h(
      `a.conversation${c.id === selectedId ? ".selected" : ""}${c.unread_count > 0 ? ".unread" : ""}`,
      { href: `#/inbox/${c.id}`, "data-key": c.id, "aria-current": c.id === selectedId ? "true" : undefined },
      h("span.who", {}, who),
      c.title ? h("span.title", {}, c.title) : null,
      h(
        "span.meta",
        {},
        h("span.chip", {}, c.channel),
        statusChip(c.status),
        c.unread_count > 0 ? h("span.badge", { "aria-label": `${c.unread_count} unread` }, `${c.unread_count} unread`) : null,
        h("span.muted", {}, `${c.message_count} msg`),
        time(c.last_message_at),
      ),
      c.matching_messages !== undefined ? h("span.muted.small", {}, `${c.matching_messages} matching message${c.matching_messages === 1 ? "" : "s"}`) : null,
    ),
  );
}

/** Our side of the conversation: who sent its outbound messages (or received its inbound ones). */
function ourAddress(conversation, messages) {
  const out = [...messages].reverse().find((m) => m.direction === "outbound");
  if (out) return out.from;
  const inbound = messages.find((m) => m.direction === "inbound");
  if (inbound) return inbound.to;
  return conversation.participants[0];
}

function threadView(id, changed) {
  const header = h("div.thread-header");
  const actionsStatus = h("p.muted.small", { role: "status", "aria-live": "polite" });
  const list = h("ol.thread", { "aria-label": "Messages, oldest first" });
  const more = h("p.muted.small");
  const composer = h("div.composer-slot");
  const error = h("div");
  const element = h("section.pane.thread-pane", { "aria-labelledby": "thread-title" },
    h("p.back", {}, h("a", { href: "#/inbox" }, "← All conversations")),
    header, actionsStatus, error, more, list, composer);

  let conversation = null;
  let messages = [];
  let lastHeader = "";
  let lastList = "";
  let compose = null;

  async function act(label, fn) {
    actionsStatus.textContent = `${label}…`;
    try {
      await fn();
      actionsStatus.textContent = `${label}: done`;
      await refresh();
      changed();
    } catch (e) {
      actionsStatus.textContent = `${label} failed: ${e.message}`;
    }
  }

  function renderHeader() {
    const c = conversation;
    const key = JSON.stringify(c);
    if (key === lastHeader) return;
    lastHeader = key;
    const setStatus = (status, label) =>
      h("button.secondary", { type: "button", "data-key": `status-${status}`, onclick: () => act(label, () => patch(`/api/v1/conversations/${id}`, { status })) }, label);
    replace(
      header,
      h("h2", { id: "thread-title" }, c.participants.join(" ↔ ")),
      c.title ? h("p", {}, c.title) : null,
      h("p.meta", {}, h("span.chip", {}, c.channel), statusChip(c.status),
        h("span", {}, `${c.message_count} messages`),
        c.unread_count > 0 ? h("span.badge", {}, `${c.unread_count} unread`) : h("span.muted", {}, "all read")),
      h(
        "div.actions",
        {},
        h("button", { type: "button", "data-key": "read", disabled: c.unread_count === 0, onclick: () => act("Mark as read", () => post(`/api/v1/conversations/${id}/read`)) }, "Mark as read"),
        c.status === "archived" || c.status === "closed" ? setStatus("active", "Reopen") : setStatus("archived", "Archive"),
        c.status !== "closed" ? setStatus("closed", "Close") : null,
      ),
    );
  }

  function renderMessages(total) {
    const key = JSON.stringify(messages);
    if (key === lastList) return;
    const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    lastList = key;
    more.textContent = total > messages.length ? `Showing the latest ${messages.length} of ${total} messages.` : "";
    replace(list, messages.length ? messages.map(bubble) : h("li.muted", {}, "No messages yet."));
    if (nearBottom || !list.dataset.scrolled) {
      list.scrollTop = list.scrollHeight;
      list.dataset.scrolled = "1";
    }
  }

  async function refresh() {
    try {
      const [c, page] = await Promise.all([
        get(`/api/v1/conversations/${id}`),
        get(`/api/v1/conversations/${id}/messages${query({ order: "desc", limit: THREAD_LIMIT })}`),
      ]);
      conversation = c;
      messages = page.messages.slice().reverse();
      replace(error);
      renderHeader();
      renderMessages(page.total);
      if (!compose) {
        compose = composerView(conversation, messages, async () => {
          await refresh();
          changed();
        });
        replace(composer, compose.element);
      }
    } catch (e) {
      if (e instanceof ApiFailure && e.status === 404) {
        replace(error, errorBox("This conversation does not exist (any more)."));
      } else {
        replace(error, errorBox(e.message));
      }
      throw e;
    }
  }

  return { element, refresh };
}

function bubble(m) {
  const attachments = (m.attachments || []).length
    ? h("ul.attachments", { "aria-label": "Attachments" }, m.attachments.map((url) => h("li", {}, safeLink(url))))
    : null;
  return h(
    `li.bubble.${m.direction === "inbound" ? "inbound" : "outbound"}`,
    { "data-key": m.id, "data-status": m.status },
    h("div.bubble-meta", {}, h("span", {}, `${m.from} → ${m.to}`), time(m.created_at)),
    m.subject ? h("p.subject", {}, m.subject) : null,
    m.body ? h("p.body", {}, m.body) : null,
    attachments,
    h(
      "div.bubble-foot",
      {},
      h("span.chip", {}, m.type),
      statusChip(m.status),
      m.error ? h("span.error-text", {}, `${m.error.code}: ${m.error.message}`) : null,
      h("a", { href: `#/messages/${m.id}` }, "details"),
    ),
  );
}

function composerView(conversation, messages, after) {
  const ours = ourAddress(conversation, messages);
  const phone = conversation.channel === "phone";
  const fromSel = select("from", conversation.participants.map((p) => [p, p]), ours);
  const toText = h("output.to");
  const subject = h("input", { type: "text", name: "subject", maxlength: 998 });
  const body = h("textarea", { name: "body", rows: 3, required: true, maxlength: phone ? SMS_MAX_CHARS : undefined });
  const counter = h("span.muted.small", { id: "composer-count" });
  const status = h("p.small", { role: "status", "aria-live": "polite" });
  const sendButton = h("button", { type: "submit" }, "Send");
  body.setAttribute("aria-describedby", counter.id);

  const other = () => conversation.participants.find((p) => p !== fromSel.value) || conversation.participants[1];
  const updateTo = () => { toText.textContent = other(); };
  const updateCount = () => {
    const chars = [...body.value].length;
    if (!phone) {
      counter.textContent = `${chars} characters`;
      return;
    }
    const c = countSegments(body.value);
    const why = c.firstNonGsm === undefined ? "" : ` (“${c.firstNonGsm}” is not in GSM-7)`;
    counter.textContent = `${chars} / ${SMS_MAX_CHARS} characters · ${c.encoding}${why} · ` +
      `${c.segments} segment${c.segments === 1 ? "" : "s"} of up to ${c.perSegment}`;
    counter.dataset.segments = String(c.segments);
    counter.dataset.encoding = c.encoding;
  };
  fromSel.addEventListener("change", updateTo);
  body.addEventListener("input", updateCount);
  updateTo();
  updateCount();
  toText.id = `composer-to`;

  const form = h(
    "form.composer",
    { "aria-label": "Reply" },
    h("h3", {}, "Reply"),
    h("div.row", {}, field("From", fromSel), h("div.field", {}, h("span.label", { id: "to-label" }, "To"), toText)),
    phone ? null : field("Subject", subject),
    field("Message", body),
    h("div.actions", {}, sendButton, counter),
    status,
  );
  toText.setAttribute("aria-labelledby", "to-label");
  // One key per composed message, so a double click or a retried request never sends twice.
  let idempotencyKey = crypto.randomUUID();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!body.value.trim()) {
      status.textContent = "Write a message first.";
      body.focus();
      return;
    }
    const payload = { from: fromSel.value, to: other(), body: body.value };
    payload.type = phone ? "sms" : "email";
    if (!phone && subject.value.trim()) payload.subject = subject.value.trim();
    sendButton.disabled = true;
    status.textContent = "Sending…";
    try {
      const m = await post("/api/v1/messages/send", payload, { "Idempotency-Key": idempotencyKey });
      status.textContent = `Accepted (${m.status}); its status updates below.`;
      body.value = "";
      subject.value = "";
      idempotencyKey = crypto.randomUUID();
      updateCount();
      await after();
    } catch (err) {
      status.textContent = `Not sent: ${err.message}`;
    } finally {
      sendButton.disabled = false;
    }
  });
  return { element: form };
}
