// The provider webhook log: every call, verified or refused, with its outcome.

import { get, query } from "./api.js";
import { h, replace, time, field, select, errorBox } from "./dom.js";

const PAGE = 50;
const state = { provider: "", offset: 0 };

export function mount() {
  const providerSel = select("provider", [["", "any provider"], ["twilio", "twilio"], ["sendgrid", "sendgrid"]], state.provider);
  const form = h("form.filters", { "aria-label": "Filter webhook deliveries" }, field("Provider", providerSel), h("div.actions", {}, h("button", { type: "submit" }, "Filter")));
  const summary = h("p.muted", { role: "status" });
  const tbody = h("tbody");
  const error = h("div");
  const prev = h("button.secondary", { type: "button" }, "← Newer");
  const next = h("button.secondary", { type: "button" }, "Older →");
  const element = h(
    "section.pane",
    { "aria-labelledby": "wh-title" },
    h("h1", { id: "wh-title" }, "Webhooks"),
    h("p.muted.small", {}, "Every provider callback is logged, whether it was verified, refused or a replay."),
    form, error, summary,
    h("div.table-wrap", {}, h(
      "table.log",
      {},
      h("caption.visually-hidden", {}, "Webhook deliveries, newest first"),
      h("thead", {}, h("tr", {}, ["Received", "Provider", "Kind", "Verified", "Outcome", "Message", "Detail"].map((t) => h("th", { scope: "col" }, t)))),
      tbody,
    )),
    h("div.actions.pager", {}, prev, next),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    state.provider = providerSel.value;
    state.offset = 0;
    refresh().catch(() => {});
  });
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh().catch(() => {}); });
  next.addEventListener("click", () => { state.offset += PAGE; refresh().catch(() => {}); });

  let last = "";
  async function refresh() {
    let res;
    try {
      res = await get(`/api/v1/webhook-deliveries${query({ provider: state.provider, limit: PAGE, offset: state.offset })}`);
      replace(error);
    } catch (e) {
      replace(error, errorBox(e.message));
      throw e;
    }
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + PAGE >= res.total;
    const key = JSON.stringify([res, state]);
    if (key === last) return;
    last = key;
    summary.textContent = `${res.total} webhook deliver${res.total === 1 ? "y" : "ies"}`;
    replace(
      tbody,
      res.deliveries.length
        ? res.deliveries.map((d) =>
          h(
            "tr",
            {},
            h("td", {}, time(d.received_at)),
            h("td", {}, d.provider),
            h("td", {}, d.kind),
            h("td", {}, h(`span.chip.${d.verified ? "status-sent" : "status-failed"}`, {}, d.verified ? "verified" : "not verified")),
            h("td", {}, d.outcome),
            h("td", {}, d.message_id ? h("a", { href: `#/messages/${d.message_id}` }, d.message_id.slice(0, 8)) : "—"),
            h("td", {}, d.detail && Object.keys(d.detail).length ? h("code.detail", {}, JSON.stringify(d.detail)) : ""),
          ))
        : h("tr", {}, h("td", { colspan: 7 }, "No webhook calls yet.")),
    );
  }
  return { title: "Webhooks", element, refresh };
}
