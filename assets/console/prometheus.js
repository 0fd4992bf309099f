// A small reader of the Prometheus text exposition format (what /metrics serves).

/** [{name, labels, value}] for every sample line; comments and bad lines are skipped. */
export function parsePrometheus(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?$/.exec(line);
    if (!m) continue;
    const value = parseValue(m[3]);
    if (value === null) continue;
    samples.push({ name: m[1], labels: m[2] ? parseLabels(m[2].slice(1, -1)) : {}, value });
  }
  return samples;
}

function parseValue(s) {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (s === "NaN") return NaN;
  const v = Number(s);
  return Number.isNaN(v) ? null : v;
}

function parseLabels(s) {
  const labels = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/gy;
  let m;
  while ((m = re.exec(s)) !== null) {
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  }
  return labels;
}

/** The sum of a metric's samples whose labels match `where`, or null when it has none. */
export function sum(samples, name, where) {
  let total = null;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (where && !Object.entries(where).every(([k, v]) => s.labels[k] === v)) continue;
    total = (total || 0) + s.value;
  }
  return total;
}

/** Samples of one metric, grouped by one label. */
export function byLabel(samples, name, label) {
  const out = {};
  for (const s of samples) {
    if (s.name === name) out[s.labels[label] || ""] = (out[s.labels[label] || ""] || 0) + s.value;
  }
  return out;
}
