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
