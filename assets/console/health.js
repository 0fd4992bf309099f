// Health: dependency states (/dependencies, else /ready), live numbers from /metrics and a
// chart of the send and failure rates over the last minutes.

import { get, getText, ApiFailure } from "./api.js";
import { h, replace, errorBox } from "./dom.js";
import { parsePrometheus, sum, byLabel } from "./prometheus.js";

/** Samples kept for the chart: 120 polls of 2.5 s are the last five minutes. */
const MAX_SAMPLES = 120;
const samples = []; // {t, sent, failed, sentRate, failedRate}
let dependenciesMissing = false;
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return el;
}

async function dependencies() {
  if (!dependenciesMissing) {
    try {
      return { source: "/dependencies", body: await get("/dependencies"), ok: true };
    } catch (e) {
      if (e instanceof ApiFailure && e.status === 404) dependenciesMissing = true;
      else if (e instanceof ApiFailure && e.data) return { source: "/dependencies", body: e.data, ok: false };
      else throw e;
    }
  }
  try {
    return { source: "/ready", body: await get("/ready"), ok: true };
  } catch (e) {
    if (e instanceof ApiFailure && e.data) return { source: "/ready", body: e.data, ok: false };
    throw e;
  }
}

/** The named checks of a readiness answer, whatever its exact shape. */
function checksOf(body) {
  const raw = (body && (body.checks || body.dependencies || (body.details && (body.details.checks || body.details.dependencies)))) || {};
  if (Array.isArray(raw)) return raw.map((c) => [c.name || c.dependency || "?", c]);
  return Object.entries(raw);
}

function number(label, value, hint) {
  return h("div.stat", {}, h("div.stat-value", {}, value), h("div.stat-label", {}, label), hint ? h("div.muted.small", {}, hint) : null);
}

const fmt = (v, digits = 0) => (v === null || v === undefined || Number.isNaN(v) ? "—" : v.toFixed(digits));

function chart() {
  const W = 600;
  const H = 180;
  const pad = { l: 40, r: 10, t: 10, b: 24 };
  const points = samples.filter((s) => s.sentRate !== null);
  const max = Math.max(1, ...points.map((s) => Math.max(s.sentRate, s.failedRate)));
  const now = Date.now();
  const span = MAX_SAMPLES * 2500;
  const x = (t) => pad.l + ((t - (now - span)) / span) * (W - pad.l - pad.r);
  const y = (v) => H - pad.b - (v / max) * (H - pad.t - pad.b);
  const line = (key, cls) =>
    svg("polyline", { class: cls, fill: "none", points: points.map((s) => `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`).join(" ") });
  const el = svg(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "chart-title chart-desc", class: "chart" },
    svg("title", { id: "chart-title" }, "Messages sent and failed per second, last 5 minutes"),
    svg("desc", { id: "chart-desc" }, points.length ? `Latest: ${fmt(points[points.length - 1].sentRate, 2)} sent/s, ${fmt(points[points.length - 1].failedRate, 2)} failed/s; peak ${fmt(max, 2)}/s.` : "No data yet."),
    svg("line", { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: "axis" }),
    svg("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: "axis" }),
    svg("text", { x: pad.l - 6, y: pad.t + 8, "text-anchor": "end", class: "tick" }, fmt(max, max < 10 ? 1 : 0)),
    svg("text", { x: pad.l - 6, y: H - pad.b, "text-anchor": "end", class: "tick" }, "0"),
    svg("text", { x: pad.l, y: H - 6, class: "tick" }, "−5 min"),
    svg("text", { x: W - pad.r, y: H - 6, "text-anchor": "end", class: "tick" }, "now"),
    line("sentRate", "series-sent"),
    line("failedRate", "series-failed"),
  );
  return el;
}

export function mount() {
  const deps = h("div");
  const stats = h("div.stats");
  const chartBox = h("figure.chart-box");
  const note = h("p.muted.small");
  const error = h("div");
  const element = h(
    "section.pane",
    { "aria-labelledby": "health-title" },
    h("h1", { id: "health-title" }, "Health"),
    error,
    h("h2", {}, "Dependencies"), deps,
    h("h2", {}, "Live numbers"), stats, note,
    h("h2", {}, "Send rate"), chartBox,
  );

  async function refresh() {
    const [d, text] = await Promise.all([dependencies(), getText("/metrics").catch((e) => { replace(error, errorBox(e.message)); return null; })]);
    const checks = checksOf(d.body);
    const overall = d.body.status || (d.ok ? "ready" : d.body.error || "not ready");
    replace(
      deps,
      h("p", {}, h(`span.chip.${d.ok ? "status-sent" : "status-failed"}`, {}, overall), h("span.muted.small", {}, ` from ${d.source}`)),
      h("table.log", {},
        h("caption.visually-hidden", {}, "Dependency checks"),
        h("thead", {}, h("tr", {}, ["Dependency", "State", "Backend", "Latency", "Error"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, checks.map(([name, c]) => {
          const st = typeof c === "object" && c ? c.status || c.state || "" : String(c);
          const up = ["up", "ok", "ready", "healthy"].includes(String(st).toLowerCase());
          return h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, h(`span.chip.${up ? "status-sent" : "status-failed"}`, {}, st || "?")),
            h("td", {}, (c && c.backend) || ""), h("td", {}, c && c.latency_ms !== undefined ? `${c.latency_ms} ms` : ""), h("td", {}, (c && c.error) || ""));
        }))),
    );
    if (text === null) return;
    replace(error);
    const m = parsePrometheus(text);
    const sent = sum(m, "message_sent_total");
    const failed = sum(m, "message_failed_total");
    const t = Date.now();
    const prev = samples[samples.length - 1];
    const rate = (now, before) => (prev && now !== null && before !== null ? Math.max(0, (now - before) / ((t - prev.t) / 1000)) : null);
    samples.push({ t, sent: sent || 0, failed: failed || 0, sentRate: rate(sent || 0, prev && prev.sent), failedRate: rate(failed || 0, prev && prev.failed) });
    while (samples.length > MAX_SAMPLES) samples.shift();
    const last = samples[samples.length - 1];
    const depths = byLabel(m, "queue_depth", "stream");
    const inUse = sum(m, "db_pool_connections", { state: "in_use" });
    const poolMax = sum(m, "db_pool_max_connections");
    replace(
      stats,
      number("queue backlog", fmt(sum(m, "queue_depth")), Object.entries(depths).map(([s, v]) => `${s.split(":").pop()} ${v}`).join(" · ")),
      number("retries waiting", fmt(sum(m, "queue_delayed"))),
      number("dead letters", fmt(sum(m, "queue_dead_letter_size"))),
      number("sent / s", fmt(last.sentRate, 2), `${fmt(sent)} since start`),
      number("failed / s", fmt(last.failedRate, 2), `${fmt(failed)} since start`),
      number("requests in flight", fmt(sum(m, "api_requests_in_flight"))),
      number("db connections in use", inUse === null ? "—" : `${fmt(inUse)} / ${fmt(poolMax)}`),
    );
    note.textContent = sent === null
      ? "This process has sent nothing yet, or its workers run as separate processes (their own /metrics is on WORKER_METRICS_PORT); queue gauges are sampled every METRICS_SAMPLE_INTERVAL."
      : "Counters of this process; queue gauges are sampled every METRICS_SAMPLE_INTERVAL.";
    replace(chartBox, chart(), h("figcaption", {}, h("span.key.key-sent", {}, "sent/s"), " ", h("span.key.key-failed", {}, "failed/s"), " — sampled every 2.5 s while this page is open"));
  }
  return { title: "Health", element, refresh };
}
