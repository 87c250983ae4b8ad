// The annotator's task page: fetch a task, let the annotator rank its images (tap, drag, keys),
// send the ranking and move straight on to the next task without reloading the page.

import { ApiError, api, takeFragmentCredential } from "./api.js";
import { enableDrag } from "./drag.js";
import { $, clear, copyText, h, ordinal } from "./dom.js";
import { Ranking } from "./ranking.js";

const KEYS = "1234567890abcdefghijklmnopqrstuvwxyz";
// Waiting for the next round: check soon (a round renders in seconds), then less often.
const POLL_FIRST_MS = 1500;
const POLL_MAX_MS = 15000;
const PRELOAD_TIMEOUT_MS = 15000;

const state = {
  token: null,
  task: null,
  ranking: null,
  tieMode: false,
  leaseEnd: null, // performance.now() at which the lease runs out
  leaseTimer: null,
  pollTimer: null,
  pollDelay: POLL_FIRST_MS,
  sending: false,
  doneThisVisit: Number(sessionStorage.getItem("rankloop.doneThisVisit") || 0),
  aspect: 1,
};

const ui = {
  grid: $("#grid"),
  ranking: $("#ranking"),
  tray: $("#tray"),
  task: $("#task"),
  prompt: $("#prompt"),
  instructions: $("#instructions"),
  submit: $("#submit"),
  undo: $("#undo"),
  tie: $("#tie"),
  lease: $("#lease"),
  done: $("#done-count"),
  quota: $("#quota"),
  status: $("#status"),
  statusTitle: $("#status-title"),
  statusText: $("#status-text"),
  statusRetry: $("#status-retry"),
  codeBanner: $("#code-banner"),
  code: $("#completion-code"),
  live: $("#live"),
  toast: $("#toast"),
  viewer: $("#viewer"),
  viewerImg: $("#viewer-img"),
  viewerCaption: $("#viewer-caption"),
  viewerPick: $("#viewer-pick"),
};

// ---------------------------------------------------------------- messages

function announce(text) {
  // Clearing first makes screen readers repeat an identical message.
  ui.live.textContent = "";
  window.setTimeout(() => {
    ui.live.textContent = text;
  }, 30);
}

let toastTimer = null;
function toast(text) {
  ui.toast.textContent = text;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    ui.toast.hidden = true;
  }, 3500);
}

// The API's messages are clauses ("this task already has your ranking; ..."): a sentence on screen.
function asSentence(text) {
  const trimmed = String(text || "").trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function showStatus(title, text, { retry = false } = {}) {
  ui.task.hidden = true;
  ui.tray.hidden = true;
  ui.lease.hidden = true;
  ui.status.hidden = false;
  ui.statusTitle.textContent = title;
  ui.statusText.textContent = text;
  ui.statusRetry.hidden = !retry;
}

function updateDoneCount() {
  const n = state.doneThisVisit;
  ui.done.textContent = `${n} done this visit`;
}

function showMe(me) {
  if (me.tasks_quota) {
    ui.quota.hidden = false;
    ui.quota.textContent = `${me.tasks_done} of ${me.tasks_quota} tasks`;
  }
  if (me.completion_code) {
    ui.code.textContent = me.completion_code;
    ui.codeBanner.hidden = false;
  }
}

// ---------------------------------------------------------------- loading tasks

function label(index) {
  return KEYS[index] ?? String(index + 1);
}

function preload(urls) {
  const one = (url) =>
    new Promise((resolve) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => resolve(null);
      img.src = url;
    });
  const all = Promise.all(urls.map(one));
  const timeout = new Promise((resolve) => setTimeout(() => resolve([]), PRELOAD_TIMEOUT_MS));
  return Promise.race([all, timeout]);
}

async function refreshMe() {
  try {
    const { data } = await api("/me", { credential: state.token });
    if (data) showMe(data);
    return data;
  } catch (err) {
    if (err.status === 401 || err.status === 403) throw err;
    return null; // the counter is a nicety; a failure here must not block the task
  }
}

async function loadNext() {
  clearTimeout(state.pollTimer);
  stopLease();
  state.task = null;
  let response;
  try {
    response = await api("/tasks/next", { credential: state.token });
  } catch (err) {
    handleFatal(err);
    return;
  }
  if (response.status === 204 || !response.data) {
    const me = await refreshMe().catch(() => null);
    if (me?.completion_code) {
      showStatus(
        "All done. Thank you!",
        "Copy your completion code above and paste it into the platform that sent you here. You can close this page.",
      );
    } else {
      showStatus(
        "No task is open right now",
        "New images are being prepared. This page checks again by itself; keep it open, or come back later.",
        { retry: true },
      );
      state.pollTimer = setTimeout(loadNext, state.pollDelay);
      state.pollDelay = Math.min(POLL_MAX_MS, state.pollDelay * 2);
    }
    return;
  }
  state.pollDelay = POLL_FIRST_MS;
  const task = response.data;
  // The Date header is truncated to the second, so the server's clock read at least that: counting
  // from it the page never ends a lease before the server does (ending it early fetched the same,
  // still running lease again and again until it really ran out).
  const receivedAt = performance.now();
  const dateHeader = Date.parse(response.headers.get("Date") || "");
  const serverNow = Number.isFinite(dateHeader) ? dateHeader : Date.now();
  const loaded = await preload(task.images.map((image) => image.url));
  const first = loaded.find(Boolean);
  state.aspect = first ? first.naturalWidth / first.naturalHeight : 1;
  preload(task.images.map((image) => image.thumb_url).filter(Boolean));
  showTask(task, serverNow, receivedAt);
}

function handleFatal(err) {
  if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
    sessionStorage.removeItem("rankloop.token");
    showStatus(
      "This task link is not valid",
      "The link may have expired or been mistyped. Open the link you were given again, or ask the study's organiser for a new one.",
    );
  } else {
    showStatus("Connection problem", err.message || "Something went wrong.", { retry: true });
  }
}

// ---------------------------------------------------------------- rendering

function showTask(task, serverNow, receivedAt) {
  state.task = task;
  state.ranking = new Ranking(
    task.images.map((image) => image.id),
    { k: task.k, allowTies: task.allow_ties },
  );
  state.tieMode = false;
  ui.status.hidden = true;
  ui.task.hidden = false;
  ui.tray.hidden = false;
  ui.task.dataset.taskId = task.task_id;
  ui.prompt.textContent = task.prompt || "";
  ui.tie.hidden = !task.allow_ties;
  const n = task.images.length;
  const keys = `${label(0)}–${label(n - 1)}`;
  const what =
    state.ranking.k === null
      ? "Rank the images from best to worst"
      : `Pick the best ${state.ranking.k}, best first`;
  const touch = window.matchMedia("(pointer: coarse)").matches;
  ui.instructions.textContent = touch
    ? `${what}: tap them in order (tap again to take one back), or hold and drag one into the ranking below. ⤢ shows an image full size.` +
      (task.allow_ties ? " Tie makes your next pick equal to the previous one." : "")
    : `${what}: click them in order, drag them into the ranking below, or press their keys (${keys}). ` +
      "Click again to take one back. ⤢ (or Shift + key) shows an image full size." +
      (task.allow_ties ? " Tie (=) makes your next pick equal to the previous one." : "");
  clear(ui.grid);
  task.images.forEach((image, index) => ui.grid.append(tile(image, index)));
  ui.grid.style.setProperty("--aspect", String(state.aspect || 1));
  layoutGrid();
  render();
  startLease(task.expires_at, serverNow, receivedAt);
  ui.grid.querySelector(".tile-pick")?.focus({ preventScroll: true });
}

function altText(image, index) {
  return image.alt || `Image ${label(index)}`;
}

function tile(image, index) {
  const key = label(index);
  return h(
    "div",
    { className: "tile", role: "listitem", dataset: { id: image.id } },
    h(
      "button",
      { type: "button", className: "tile-pick", dataset: { dragId: image.id }, onclick: () => choose(image.id) },
      h("img", { src: image.url, alt: altText(image, index), draggable: "false", decoding: "async" }),
      h("span", { className: "tile-key", "aria-hidden": "true", text: key }),
      h("span", { className: "tile-rank", "aria-hidden": "true" }),
    ),
    h("button", {
      type: "button",
      className: "tile-zoom",
      "aria-label": `View image ${key} full size`,
      title: "Full size (Shift + key)",
      text: "⤢",
      onclick: () => openViewer(index),
    }),
  );
}

function imageIndex(id) {
  return state.task.images.findIndex((image) => image.id === id);
}

function render() {
  const { ranking, task } = state;
  for (const node of ui.grid.querySelectorAll(".tile")) {
    const id = node.dataset.id;
    const index = imageIndex(id);
    const rank = ranking.rankOf(id);
    const button = node.querySelector(".tile-pick");
    node.classList.toggle("ranked", rank !== null);
    node.classList.toggle("tied", ranking.isTied(id));
    node.querySelector(".tile-rank").textContent = rank === null ? "" : String(rank);
    button.setAttribute("aria-pressed", rank === null ? "false" : "true");
    button.setAttribute(
      "aria-label",
      `Image ${label(index)}: ${altText(task.images[index], index)}. ` +
        (rank === null ? "Not ranked." : `Ranked ${ordinal(rank)}${ranking.isTied(id) ? " (tie)" : ""}.`),
    );
  }
  renderTray();
  ui.submit.disabled = !ranking.complete || state.sending;
  ui.undo.disabled = ranking.count === 0;
  ui.tie.setAttribute("aria-pressed", String(state.tieMode));
  ui.tie.disabled = ranking.count === 0;
  document.body.classList.toggle("tie-mode", state.tieMode);
}

function thumbFor(id) {
  const image = state.task.images[imageIndex(id)];
  return image.thumb_url || image.url;
}

function renderTray() {
  const { ranking } = state;
  clear(ui.ranking);
  ranking.groups.forEach((group, position) => {
    const items = group.map((id) =>
      h(
        "span",
        { className: "rank-item", dataset: { dragId: id }, title: `Image ${label(imageIndex(id))}` },
        h("img", { src: thumbFor(id), alt: "", draggable: "false" }),
        h("span", { className: "rank-item-key", text: label(imageIndex(id)) }),
      ),
    );
    const names = group.map((id) => `image ${label(imageIndex(id))}`).join(" tied with ");
    ui.ranking.append(
      h(
        "li",
        { className: `rank-slot filled${group.length > 1 ? " tie" : ""}`, dataset: { position }, "aria-label": `${ordinal(position + 1)}: ${names}` },
        h("span", { className: "rank-num", "aria-hidden": "true", text: position + 1 }),
        h("span", { className: "rank-items" }, items),
      ),
    );
  });
  // Empty slots show how many remain; with k = null the last one fills itself.
  const implied = ranking.k === null ? ranking.ids.filter((id) => ranking.rankOf(id) === null) : [];
  const empty = ranking.limit - ranking.count;
  for (let i = 0; i < empty; i += 1) {
    const position = ranking.groups.length + i;
    const isImplied = implied.length === 1 && i === empty - 1;
    ui.ranking.append(
      h(
        "li",
        { className: `rank-slot empty${isImplied ? " implied" : ""}`, "aria-hidden": "true", dataset: { position } },
        h("span", { className: "rank-num", text: position + 1 }),
        isImplied
          ? h("span", { className: "rank-items" }, h("span", { className: "rank-item ghosted" }, h("img", { src: thumbFor(implied[0]), alt: "" })))
          : h("span", { className: "rank-items" }, h("span", { className: "rank-hole" })),
      ),
    );
  }
}

// Grid sized to the screen: as many columns as make the images largest while all of them fit
// above the tray; on a narrow screen two columns and the page scrolls.
function layoutGrid() {
  if (!state.task) return;
  const n = state.task.images.length;
  const gap = parseFloat(getComputedStyle(ui.grid).columnGap) || 12;
  const width = ui.grid.clientWidth;
  const top = ui.grid.getBoundingClientRect().top + window.scrollY;
  const height = Math.max(200, window.innerHeight - top - (ui.tray.offsetHeight || 0) - 16);
  const aspect = state.aspect || 1;
  let best = { cols: 1, tile: 0 };
  for (let cols = 1; cols <= n; cols += 1) {
    const rows = Math.ceil(n / cols);
    const tile = Math.min((width - gap * (cols - 1)) / cols, ((height - gap * (rows - 1)) / rows) * aspect);
    if (tile > best.tile) best = { cols, tile };
  }
  // Too small to judge details when everything must fit: let the page scroll instead, with
  // columns of at least MIN_TILE_PX (two on a phone).
  const MIN_TILE_PX = 160;
  if (best.tile < MIN_TILE_PX || width < 600) {
    const fit = Math.floor((width + gap) / (MIN_TILE_PX + gap));
    const cols = Math.max(1, Math.min(n, fit, width < 600 ? 2 : fit));
    best = { cols, tile: (width - gap * (cols - 1)) / cols };
  }
  ui.grid.style.setProperty("--cols", String(best.cols));
  ui.grid.style.setProperty("--tile-w", `${Math.floor(best.tile)}px`);
}

// ---------------------------------------------------------------- ranking actions

function choose(id, { viaKey = false } = {}) {
  if (!state.task || state.sending) return;
  const { ranking } = state;
  const key = label(imageIndex(id));
  const result = ranking.toggle(id, { tie: state.tieMode });
  if (result === "picked") {
    const rank = ranking.rankOf(id);
    announce(ranking.isTied(id) ? `Image ${key} tied at ${ordinal(rank)}.` : `Image ${key} ranked ${ordinal(rank)}.`);
    state.tieMode = false;
  } else if (result === "removed") {
    announce(`Image ${key} taken back.`);
  } else if (result === "full") {
    const msg = `Only your top ${ranking.limit} count. Take one back first.`;
    announce(msg);
    toast(msg);
  }
  render();
  if (ranking.complete && !viaKey) ui.submit.focus({ preventScroll: true });
}

function undo() {
  const id = state.ranking?.undo();
  if (id === null || id === undefined) return;
  announce(`Image ${label(imageIndex(id))} taken back.`);
  render();
}

function toggleTie() {
  if (!state.task?.allow_ties || state.ranking.count === 0) return;
  state.tieMode = !state.tieMode;
  announce(state.tieMode ? "Tie on: your next pick ties with the previous one." : "Tie off.");
  render();
}

async function submit() {
  const { task, ranking } = state;
  if (!task || !ranking.complete || state.sending) return;
  state.sending = true;
  render();
  try {
    await api(`/tasks/${encodeURIComponent(task.task_id)}/ranking`, {
      method: "POST",
      body: { order: ranking.toOrder() },
      credential: state.token,
    });
    state.doneThisVisit += 1;
    sessionStorage.setItem("rankloop.doneThisVisit", String(state.doneThisVisit));
    updateDoneCount();
    announce("Ranking sent. Loading the next set.");
    toast("Ranking sent. Thank you!");
  } catch (err) {
    if (err.status === 401 || err.status === 403) {
      state.sending = false;
      handleFatal(err);
      return;
    }
    if (err.status === 409 || err.status === 410 || err.status === 404) {
      toast(`${asSentence(err.message)} Moving on to the next set.`);
      announce(asSentence(err.message));
    } else {
      // Keep the ranking on screen so the annotator can try again.
      state.sending = false;
      render();
      toast(`Not sent: ${err.message}`);
      announce(`Not sent: ${err.message}`);
      return;
    }
  }
  state.sending = false;
  await refreshMe().catch(handleFatal);
  await loadNext();
}

// ---------------------------------------------------------------- lease countdown

function startLease(expiresAt, serverNow, receivedAt) {
  stopLease();
  const end = Date.parse(expiresAt || "");
  if (!Number.isFinite(end)) return;
  state.leaseEnd = receivedAt + (end - serverNow); // from the answer, not after the preload
  ui.lease.hidden = false;
  tickLease();
  state.leaseTimer = setInterval(tickLease, 1000);
}

function stopLease() {
  clearInterval(state.leaseTimer);
  state.leaseTimer = null;
  state.leaseEnd = null;
}

function tickLease() {
  // leaseEnd is the latest the lease may end (the server's clock may have read up to a second
  // past the Date header): shown, the earliest; acted on, the latest, so that a lease still
  // running on the server is never given up.
  const leftMs = state.leaseEnd - performance.now();
  const left = Math.max(0, Math.ceil((leftMs - 1000) / 1000));
  const minutes = Math.floor(left / 60);
  const seconds = String(left % 60).padStart(2, "0");
  ui.lease.textContent = `${minutes}:${seconds} left`;
  ui.lease.classList.toggle("warn", left <= 60);
  if (leftMs <= 0 && !state.sending) {
    stopLease();
    toast("Time ran out for this set. Here is a fresh one.");
    announce("Time ran out for this set. Loading a fresh one.");
    loadNext();
  }
}

// ---------------------------------------------------------------- full-size viewer

let viewerIndex = 0;

function openViewer(index) {
  viewerIndex = index;
  fillViewer();
  if (!ui.viewer.open) ui.viewer.showModal();
}

function fillViewer() {
  const image = state.task.images[viewerIndex];
  const rank = state.ranking.rankOf(image.id);
  ui.viewerImg.src = image.url;
  ui.viewerImg.alt = altText(image, viewerIndex);
  ui.viewerCaption.textContent =
    `Image ${label(viewerIndex)} of ${state.task.images.length}` + (rank === null ? "" : ` · ranked ${ordinal(rank)}`);
  ui.viewerPick.textContent = rank === null ? "Rank next" : "Take back";
}

function stepViewer(delta) {
  const n = state.task.images.length;
  viewerIndex = (viewerIndex + delta + n) % n;
  fillViewer();
}

$("#viewer-prev").addEventListener("click", () => stepViewer(-1));
$("#viewer-next").addEventListener("click", () => stepViewer(1));
$("#viewer-close").addEventListener("click", () => ui.viewer.close());
ui.viewerPick.addEventListener("click", () => {
  choose(state.task.images[viewerIndex].id);
  fillViewer();
});
ui.viewer.addEventListener("click", (event) => {
  if (event.target === ui.viewer) ui.viewer.close(); // a click on the backdrop
});

// ---------------------------------------------------------------- keyboard

function keyIndex(event) {
  // event.code survives Shift (Shift+1 is "!" in event.key).
  const match = /^(?:Digit|Numpad)(\d)$|^Key([A-Z])$/.exec(event.code);
  const char = match ? (match[1] ?? match[2].toLowerCase()) : event.key.toLowerCase();
  const index = KEYS.indexOf(char);
  return index >= 0 && state.task && index < state.task.images.length ? index : -1;
}

document.addEventListener("keydown", (event) => {
  if (!state.task || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest?.("input, textarea, select")) return;
  if (ui.viewer.open) {
    if (event.key === "ArrowLeft") stepViewer(-1);
    else if (event.key === "ArrowRight") stepViewer(1);
    else return;
    event.preventDefault();
    return;
  }
  const index = keyIndex(event);
  if (index >= 0) {
    event.preventDefault();
    if (event.shiftKey) openViewer(index);
    else choose(state.task.images[index].id, { viaKey: true });
  } else if (event.key === "Backspace") {
    event.preventDefault();
    undo();
  } else if (event.key === "Enter") {
    if (state.ranking.complete) {
      event.preventDefault();
      submit();
    }
  } else if (event.key === "=") {
    event.preventDefault();
    toggleTie();
  }
});

// ---------------------------------------------------------------- drag and drop

function dropPosition(x, y) {
  const rect = ui.tray.getBoundingClientRect();
  if (y < rect.top - 24 || y > rect.bottom || x < rect.left || x > rect.right) return null;
  const slots = [...ui.ranking.querySelectorAll(".rank-slot")];
  if (!slots.length) return 0;
  let best = null;
  for (const slot of slots) {
    const r = slot.getBoundingClientRect();
    const cx = r.left + r.width / 2;
    const cy = r.top + r.height / 2;
    const distance = Math.hypot(x - cx, (y - cy) * 2); // rows weigh more: the tray may wrap
    if (!best || distance < best.distance) best = { slot, distance, before: x < cx };
  }
  const position = Number(best.slot.dataset.position);
  if (best.slot.classList.contains("empty")) return state.ranking.groups.length;
  return best.before ? position : position + 1;
}

function clearDropMarks() {
  for (const node of ui.ranking.querySelectorAll(".drop-before, .drop-after")) {
    node.classList.remove("drop-before", "drop-after");
  }
  ui.tray.classList.remove("drop-target");
}

enableDrag(document.body, "[data-drag-id]", {
  ghostFor(element) {
    const id = element.dataset.dragId;
    return h("div", {}, h("img", { src: thumbFor(id), alt: "" }));
  },
  onMove(element, x, y) {
    clearDropMarks();
    const position = dropPosition(x, y);
    if (position === null) return;
    ui.tray.classList.add("drop-target");
    const slots = ui.ranking.querySelectorAll(".rank-slot");
    if (position < slots.length) slots[position].classList.add("drop-before");
    else if (slots.length) slots[slots.length - 1].classList.add("drop-after");
  },
  onDrop(element, x, y) {
    clearDropMarks();
    if (!state.task || state.sending) return;
    const id = element.dataset.dragId;
    const key = label(imageIndex(id));
    let position = dropPosition(x, y);
    if (position === null) {
      // Dragged out of the tray: a ranked image is taken back.
      if (element.classList.contains("rank-item") && state.ranking.remove(id)) {
        announce(`Image ${key} taken back.`);
        render();
      }
      return;
    }
    const from = state.ranking.groups.findIndex((group) => group.includes(id));
    if (from >= 0 && state.ranking.groups[from].length === 1 && position > from) position -= 1;
    state.ranking.moveTo(id, position);
    state.tieMode = false;
    announce(`Image ${key} moved to ${ordinal(state.ranking.rankOf(id))}.`);
    render();
  },
  onCancel: clearDropMarks,
});

// ---------------------------------------------------------------- start

ui.submit.addEventListener("click", submit);
ui.undo.addEventListener("click", undo);
ui.tie.addEventListener("click", toggleTie);
ui.statusRetry.addEventListener("click", () => {
  state.pollDelay = POLL_FIRST_MS;
  loadNext();
});
$("#copy-code").addEventListener("click", async () => {
  const ok = await copyText(ui.code.textContent);
  toast(ok ? "Completion code copied." : "Select the code and copy it by hand.");
});
let resizeFrame = 0;
window.addEventListener("resize", () => {
  cancelAnimationFrame(resizeFrame);
  resizeFrame = requestAnimationFrame(layoutGrid);
});

async function main() {
  updateDoneCount();
  state.token = takeFragmentCredential("token", "rankloop.token");
  if (!state.token) {
    showStatus(
      "Open your personal task link",
      "This page needs the link you were given (it ends in #token=…). Open that link again to start.",
    );
    return;
  }
  try {
    await refreshMe();
  } catch (err) {
    handleFatal(err);
    return;
  }
  await loadNext();
}

// A new link opened in the same tab only changes the fragment: no page load, so start over.
window.addEventListener("hashchange", () => {
  if (!/(^#|&)token=/.test(window.location.hash)) return;
  clearTimeout(state.pollTimer);
  stopLease();
  sessionStorage.removeItem("rankloop.token");
  main();
});

main();
