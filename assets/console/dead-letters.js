// Dead letters: every failed message (the lasting record of the dead-letter queue), each
// redriven with POST /api/v1/messages/{id}/retry, one or all.

import { get, post, query, getText } from "./api.js";
import { h, replace, statusChip, time, errorBox } from "./dom.js";
import { retryButton } from "./messages.js";
import { parsePrometheus, sum } from "./prometheus.js";

const PAGE = 100;

async function allFailed() {
  const ids = [];
  for (let offset = 0; ; offset += PAGE) {
    const res = await get(`/api/v1/messages${query({ status: "failed", limit: PAGE, offset })}`);
    ids.push(...res.messages.map((m) => m.id));
    if (res.messages.length < PAGE || offset + PAGE >= res.total) return ids;
  }
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function mount() {
  const summary = h("p", { role: "status" });
  const queueNote = h("p.muted.small");
  const progress = h("p.small", { role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  const error = h("div");
  const allButton = h("button", { type: "button" }, "Redrive all");
  const confirmBox = h("div.confirm", { hidden: true });
  let running = false;

  const element = h(
    "section.pane",
    { "aria-labelledby": "dl-title" },
    h("h1", { id: "dl-title" }, "Dead letters"),
    h("p.muted.small", {}, "Messages that failed for good: a permanent provider refusal, or retries run out. Redriving puts a message back to pending with a fresh retry budget and removes its dead letter; fix the cause first."),
    summary, queueNote, error,
    h("div.actions", {}, allButton), confirmBox, progress,
    h("div.table-wrap", {}, h(
      "table.log",
      {},
      h("caption.visually-hidden", {}, "Failed messages, newest first"),
      h("thead", {}, h("tr", {}, ["Failed", "Type", "From", "To", "Error", "Retries", ""].map((t) => h("th", { scope: "col" }, t)))),
      tbody,
    )),
  );

  allButton.addEventListener("click", () => {
    const n = Number(allButton.dataset.count || 0);
    const yes = h("button.danger", { type: "button" }, `Yes, redrive ${n} message${n === 1 ? "" : "s"}`);
    const no = h("button.secondary", { type: "button" }, "Cancel");
    replace(confirmBox, h("p", {}, `Redrive every failed message (${n})?`), yes, no);
    confirmBox.hidden = false;
    yes.focus();
    no.addEventListener("click", () => { confirmBox.hidden = true; allButton.focus(); });
    yes.addEventListener("click", async () => {
      confirmBox.hidden = true;
      await redriveAll();
      allButton.focus();
    });
  });

  async function redriveAll() {
    running = true;
    allButton.disabled = true;
    let done = 0;
    let skipped = 0;
    try {
      const ids = await allFailed();
      for (const id of ids) {
        for (;;) {
          try {
            await post(`/api/v1/messages/${id}/retry`);
            done += 1;
            break;
          } catch (e) {
            if (e.status === 429) {
              progress.textContent = `Rate limited; waiting ${e.retryAfter || 1} s…`;
              await pause((e.retryAfter || 1) * 1000);
              continue;
            }
            skipped += 1; // no longer failed (someone else redrove it) or gone
            break;
          }
        }
        progress.textContent = `Redriven ${done} of ${ids.length}…`;
      }
      progress.textContent = `Redriven ${done} message${done === 1 ? "" : "s"}` + (skipped ? `; ${skipped} were no longer failed` : "") + ".";
    } catch (e) {
      progress.textContent = `Redrive stopped: ${e.message} (${done} redriven).`;
    } finally {
      running = false;
      allButton.disabled = false;
      await refresh().catch(() => {});
    }
  }

  let last = "";
  async function refresh() {
    let res;
    try {
      res = await get(`/api/v1/messages${query({ status: "failed", limit: PAGE })}`);
      replace(error);
    } catch (e) {
      replace(error, errorBox(e.message));
      throw e;
    }
    try {
      const metrics = parsePrometheus(await getText("/metrics"));
      const size = sum(metrics, "queue_dead_letter_size");
      queueNote.textContent = size === null ? "" : `Dead-letter queue entries (from /metrics, sampled): ${size}.`;
    } catch {
      queueNote.textContent = "";
    }
    allButton.dataset.count = String(res.total);
    if (!running) allButton.disabled = res.total === 0;
    const key = JSON.stringify([res.messages, res.total]);
    if (key === last) return;
    last = key;
    summary.textContent = res.total === 0 ? "No failed messages." : `${res.total} failed message${res.total === 1 ? "" : "s"}` + (res.total > res.messages.length ? ` (newest ${res.messages.length} shown)` : "");
    replace(
      tbody,
      res.messages.map((m) => {
        const rowStatus = h("span.small");
        return h(
          "tr",
          { "data-id": m.id },
          h("td", {}, time(m.failed_at || m.updated_at)),
          h("td", {}, m.type),
          h("td.addr", {}, m.from),
          h("td.addr", {}, m.to),
          h("td", {}, m.error ? [h("code", {}, m.error.code), " ", m.error.message] : statusChip(m.status)),
          h("td", {}, String(m.retry_count)),
          h("td.row-actions", {}, h("a", { href: `#/messages/${m.id}` }, "Open"), " ",
            retryButton(m, rowStatus, () => refresh()), rowStatus),
        );
      }),
    );
  }
  return { title: "Dead letters", element, refresh };
}
