// The JSON API, as the console calls it: same origin, the operator's key as
// `Authorization: Bearer`, never cookies.

const KEY = "console.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiFailure extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Listeners told about every answer's status (401 shows the key prompt, 429 slows polling). */
const listeners = new Set();
export function onAnswer(fn) {
  listeners.add(fn);
}

export async function request(method, path, body, extraHeaders) {
  const headers = { Accept: "application/json", ...(extraHeaders || {}) };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  // Reads revalidate with the ETag the API sends (a 304 when nothing changed); writes never cache.
  const init = { method, headers, credentials: "omit", cache: method === "GET" ? "no-cache" : "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    const failure = new ApiFailure(0, "network", `the service did not answer (${e.message})`);
    listeners.forEach((fn) => fn(failure));
    throw failure;
  }
  const text = await resp.text();
  let data = null;
  if (text && (resp.headers.get("content-type") || "").includes("json")) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const retryAfter = Number(resp.headers.get("retry-after")) || 0;
    const failure = new ApiFailure(
      resp.status,
      (data && data.error) || `http_${resp.status}`,
      (data && data.message) || `${resp.status} ${resp.statusText}`,
      retryAfter,
    );
    failure.data = data;
    listeners.forEach((fn) => fn(failure));
    throw failure;
  }
  listeners.forEach((fn) => fn(null));
  return data === null ? text : data;
}

export const get = (path) => request("GET", path);
export const post = (path, body, headers) => request("POST", path, body === undefined ? {} : body, headers);
export const patch = (path, body) => request("PATCH", path, body);

/** `?a=1&b=2` from the non-empty entries of an object. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Plain text (for /metrics), same headers. */
export async function getText(path) {
  const resp = await fetch(path, { credentials: "omit", cache: "no-store" });
  if (!resp.ok) throw new ApiFailure(resp.status, `http_${resp.status}`, `${path} answered ${resp.status}`);
  return resp.text();
}
