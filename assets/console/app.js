// The console's shell: hash routes, the API key field, and polling the open view.

import { apiKey, setApiKey, onAnswer } from "./api.js";
import * as inbox from "./inbox.js";
import * as messages from "./messages.js";
import * as deadLetters from "./dead-letters.js";
import * as webhooks from "./webhooks.js";
import * as health from "./health.js";

/** How often the open view asks the API again (milliseconds). */
export const POLL_INTERVAL_MS = 2500;

const routes = [
  [/^#\/inbox(?:\/([0-9a-f-]{36}))?$/, (m) => inbox.mount(m[1])],
  [/^#\/messages\/([0-9a-f-]{36})$/, (m) => messages.mountOne(m[1])],
  [/^#\/messages$/, () => messages.mountList()],
  [/^#\/dead-letters$/, () => deadLetters.mount()],
  [/^#\/webhooks$/, () => webhooks.mount()],
  [/^#\/health$/, () => health.mount()],
];

const main = document.getElementById("main");
const banner = document.getElementById("banner");
const live = document.getElementById("live");
let current = null;
let timer = null;
let generation = 0;
let backoffUntil = 0;

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

onAnswer((failure) => {
  if (!failure) {
    if (banner.dataset.kind === "auth" || banner.dataset.kind === "network") showBanner("");
    return;
  }
  if (failure.status === 401 || failure.status === 403) {
    if (failure.code === "missing_api_key" || failure.code === "invalid_api_key" || failure.code === "api_key_revoked") {
      banner.dataset.kind = "auth";
      showBanner(`${failure.message} — enter an API key (messaging-service keys create --name console) above.`);
    }
  } else if (failure.status === 429) {
    backoffUntil = Date.now() + Math.max(1, failure.retryAfter || 5) * 1000;
    banner.dataset.kind = "rate";
    showBanner(`Rate limited: polling pauses for ${Math.max(1, failure.retryAfter || 5)} s.`);
  } else if (failure.status === 0) {
    banner.dataset.kind = "network";
    showBanner(failure.message);
  }
});

function sectionOf(hash) {
  const m = /^#\/([a-z-]+)/.exec(hash);
  return m ? m[1] : "inbox";
}

function highlightNav(hash) {
  const section = sectionOf(hash);
  for (const a of document.querySelectorAll("nav a[data-section]")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function tick(gen) {
  if (gen !== generation || !current) return;
  if (document.visibilityState === "visible" && Date.now() >= backoffUntil && current.refresh) {
    try {
      await current.refresh();
      live.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      if (banner.dataset.kind === "rate" && Date.now() >= backoffUntil) showBanner("");
    } catch (e) {
      live.textContent = `Update failed: ${e.message}`;
    }
  }
  if (gen === generation) timer = setTimeout(() => tick(gen), POLL_INTERVAL_MS);
}

async function route() {
  const hash = location.hash || "#/inbox";
  const found = routes.find(([re]) => re.test(hash));
  if (!found) {
    location.replace("#/inbox");
    return;
  }
  // Focus moves to the new heading when the section changes, not on the first load
  // (keyboard and screen-reader users start at the top, with the skip link).
  const moveFocus = current !== null && current.section !== sectionOf(hash);
  generation += 1;
  const gen = generation;
  clearTimeout(timer);
  if (current && current.unmount) current.unmount();
  highlightNav(hash);
  const view = found[1](found[0].exec(hash));
  view.section = sectionOf(hash);
  current = view;
  main.replaceChildren(view.element);
  document.title = `${view.title} · Console · messaging-service`;
  if (moveFocus) {
    const heading = main.querySelector("h1");
    (heading || main).setAttribute("tabindex", "-1");
    (heading || main).focus({ preventScroll: true });
  }
  try {
    await view.refresh();
  } catch (e) {
    live.textContent = `Loading failed: ${e.message}`;
  }
  if (gen === generation) timer = setTimeout(() => tick(gen), POLL_INTERVAL_MS);
}

// The skip link moves focus to the content without touching the route in the hash.
document.querySelector("a.skip").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});

const keyInput = document.getElementById("api-key");
keyInput.value = apiKey();
document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setApiKey(keyInput.value.trim());
  showBanner("");
  live.textContent = keyInput.value.trim() ? "API key saved for this tab" : "API key cleared";
  route();
});
document.getElementById("key-forget").addEventListener("click", () => {
  keyInput.value = "";
  setApiKey("");
  live.textContent = "API key forgotten";
  route();
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && current && current.refresh) current.refresh().catch(() => {});
});
window.addEventListener("hashchange", route);
route();
