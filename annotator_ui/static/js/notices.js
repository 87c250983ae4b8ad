// What the task page tells the annotator: the spoken live region, the toast, the status panel.

import { $ } from "./dom.js";

const live = $("#live");
const toastNode = $("#toast");

export function announce(text) {
  // Clearing first makes screen readers repeat an identical message.
  live.textContent = "";
  window.setTimeout(() => {
    live.textContent = text;
  }, 30);
}

let toastTimer = null;
export function toast(text) {
  toastNode.textContent = text;
  toastNode.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    toastNode.hidden = true;
  }, 3500);
}

// The API's messages are clauses ("this task already has your ranking; ..."): a sentence on screen.
export function asSentence(text) {
  const trimmed = String(text || "").trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

// The panel shown instead of a task: a title, a sentence, and a "Check again" button if useful.
export function showStatus(title, text, { retry = false, kind = "" } = {}) {
  $("#task").hidden = true;
  $("#tray").hidden = true;
  $("#lease").hidden = true;
  const status = $("#status");
  status.hidden = false;
  status.dataset.kind = kind;
  $("#status-title").textContent = title;
  $("#status-text").textContent = text;
  $("#status-retry").hidden = !retry;
}

// ---------------------------------------------------------------- storage in MTurk's frame

// In MTurk's frame the task page is a third-party document: a browser that blocks third-party
// cookies (Chromium's default when headless or incognito) denies it sessionStorage and
// localStorage, and every use throws. Here, evaluated before task.js's body reads either, they
// are replaced by memory: the page works; only a reload of the frame loses the place (the worker
// is then told to continue where the study was first opened).
function memoryStorage() {
  const items = new Map();
  const methods = {
    getItem: (key) => (items.has(String(key)) ? items.get(String(key)) : null),
    setItem: (key, value) => void items.set(String(key), String(value)),
    removeItem: (key) => void items.delete(String(key)),
    clear: () => items.clear(),
    key: (index) => [...items.keys()][index] ?? null,
  };
  // Object.keys(storage) lists the items, as on a real Storage (lease.js and identity.js use it).
  return new Proxy(methods, {
    get: (target, name) => (name === "length" ? items.size : target[name]),
    ownKeys: () => [...items.keys()],
    getOwnPropertyDescriptor: (_target, name) =>
      items.has(name) ? { value: items.get(name), enumerable: true, configurable: true } : undefined,
  });
}

for (const name of ["sessionStorage", "localStorage"]) {
  try {
    window[name].getItem("rankloop");
  } catch {
    Object.defineProperty(window, name, { value: memoryStorage(), configurable: true });
  }
}

// ---------------------------------------------------------------- completion on MTurk

// A worker who came from an MTurk HIT (ExternalQuestion) arrives with the assignment and the MTurk
// server to post it to in the fragment (#...&assignmentId=...&turkSubmitTo=..., only ever MTurk's:
// /join checks it, and the page's CSP form-action allows no other target). Kept in the tab.
const MTURK = "rankloop.mturk";

export function keepMturkAssignment() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const assignmentId = params.get("assignmentId");
  const submitTo = params.get("turkSubmitTo");
  if (assignmentId && submitTo) {
    sessionStorage.setItem(MTURK, JSON.stringify({ assignmentId, submitTo }));
    params.delete("assignmentId");
    params.delete("turkSubmitTo");
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + window.location.search + (rest ? `#${rest}` : ""));
  } else if (params.has("token") || params.has("rejoin")) {
    sessionStorage.removeItem(MTURK); // a new link without MTurk: nothing to post anywhere
  }
}

function keptAssignment() {
  try {
    const kept = JSON.parse(sessionStorage.getItem(MTURK) || "null");
    return kept && new URL("/mturk/externalSubmit", kept.submitTo).href ? kept : null;
  } catch {
    return null;
  }
}

// Done: post the assignment, with the completion code as its answer, to MTurk, as MTurk expects
// of an ExternalQuestion (after `delay` ms, so the code is seen; the button posts at once).
// False when this worker did not come from MTurk.
export function submitToMturk(code, delay) {
  const kept = keptAssignment();
  if (!kept) return false;
  showStatus(
    "All done. Thank you!",
    "Sending your work to MTurk to finish the HIT. If nothing happens, press the button below.",
    { kind: "redirect" },
  );
  $("#mturk-form")?.remove();
  const form = document.createElement("form");
  form.id = "mturk-form";
  form.method = "POST";
  form.action = new URL("/mturk/externalSubmit", kept.submitTo).href;
  for (const [name, value] of [["assignmentId", kept.assignmentId], ["completion_code", code]]) {
    const input = document.createElement("input");
    Object.assign(input, { type: "hidden", name, value });
    form.append(input);
  }
  const button = document.createElement("button");
  Object.assign(button, { type: "submit", className: "btn btn-primary", textContent: "Submit the HIT" });
  form.append(button);
  $("#status").append(form);
  announce("All done. Sending your work to MTurk.");
  setTimeout(() => form.requestSubmit(), delay);
  return true;
}
