// The annotator's task page: fetch a task, let the annotator rank its images (tap, drag, keys),
// send the ranking and move straight on to the next task without reloading the page. Between
// tasks waiting.js says why there is none; lease.js keeps the picks when a lease runs out.

import { ApiError, api, takeFragmentCredential } from "./api.js";
import { $, copyText, ordinal } from "./dom.js";
import { altText, firstLoaded, layoutGrid, markTiles, showTiles } from "./grid.js";
import { TOKEN_KEY, forgetToken, rejoinedToken, rememberCampaign } from "./identity.js";
import { enableInput, label } from "./input.js";
import { forgetPicks, keptPicks, reportShown, savePicks, startLease, stopLease } from "./lease.js";
import { announce, asSentence, keepMturkAssignment, showStatus, submitToMturk, toast } from "./notices.js";
import { Ranking } from "./ranking.js";
import { renderTray } from "./tray.js";
import { closeViewer, initViewer } from "./viewer.js";
import { checkNow, resetPolling, showRetrying, showWaiting, stopPolling } from "./waiting.js";

const state = {
  token: null,
  task: null,
  ranking: null,
  tieMode: false,
  sending: false,
  doneThisVisit: Number(sessionStorage.getItem("rankloop.doneThisVisit") || 0),
  aspect: 1,
};

const ui = {
  main: $("#main"),
  tray: $("#tray"),
  task: $("#task"),
  prompt: $("#prompt"),
  instructions: $("#instructions"),
  submit: $("#submit"),
  undo: $("#undo"),
  tie: $("#tie"),
  done: $("#done-count"),
  quota: $("#quota"),
  status: $("#status"),
  codeBanner: $("#code-banner"),
  code: $("#completion-code"),
  completionLink: $("#completion-link"),
  withheldBanner: $("#withheld-banner"),
  sendStatus: $("#send-status"),
};
const REDIRECT_AFTER_MS = 1500; // long enough to see the code; the platform waits for the visit

function updateDoneCount() {
  ui.done.textContent = `${state.doneThisVisit} done this visit`;
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
  // Done, but the campaign's attention policy withholds the code: say so instead of a code.
  ui.withheldBanner.hidden = !(me.completion_withheld_reason && !me.completion_code);
}

// ---------------------------------------------------------------- loading tasks

async function refreshMe() {
  try {
    const { data } = await api("/me", { credential: state.token });
    if (data) showMe(data);
    rememberCampaign(data?.campaign_id, state.token);
    return data;
  } catch (err) {
    if (err.status === 401 || err.status === 403) throw err;
    return null; // the counter is a nicety; a failure here must not block the task
  }
}

function isFatal(err) {
  return err instanceof ApiError && (err.status === 401 || err.status === 403);
}

// Returns the task shown, or null when there is none (the page then says why, and looks again).
async function loadNext() {
  stopPolling();
  stopLease();
  state.task = null;
  let response;
  try {
    response = await api("/tasks/next", { credential: state.token });
  } catch (err) {
    if (isFatal(err)) {
      lostLease = null;
      handleFatal(err);
    } else {
      if (lostLease && err.status === 0) lostLease.offline = true;
      showRetrying(err, loadNext);
    }
    return null;
  }
  if (response.status === 204 || !response.data) {
    let me;
    try {
      me = await refreshMe();
    } catch (err) {
      lostLease = null;
      handleFatal(err);
      return null;
    }
    explainLostLease(null);
    if (!goToCompletion(me)) showWaiting(me, loadNext);
    return null;
  }
  resetPolling();
  const task = response.data;
  // The Date header is truncated to the second, so the server's clock read at least that: counting
  // from it the page never ends a lease before the server does (ending it early fetched the same,
  // still running lease again and again until it really ran out).
  const { receivedAt } = response;
  const dateHeader = Date.parse(response.headers.get("Date") || "");
  const serverNow = Number.isFinite(dateHeader) ? dateHeader : Date.now();
  // The thumbnails first (small WebP): the task shows once one is in (its shape sizes the grid),
  // each tile shows its own as it arrives, then swaps in the full-size image (grid.js).
  const first = await firstLoaded(task.images.map((image) => image.thumb_url || image.url));
  state.aspect = first ? first.naturalWidth / first.naturalHeight : 1;
  showTask(task, serverNow, receivedAt);
  explainLostLease(task);
  return task;
}

// Done, from an MTurk HIT: the assignment goes back to MTurk (notices.js). Done, and the owner gave
// a completion URL (Prolific's, say): go there, as the platform expects; the code stays on the
// page, with a link, in case the browser does not follow.
function goToCompletion(me) {
  if (me?.completion_code && submitToMturk(me.completion_code, REDIRECT_AFTER_MS)) return true;
  const url = me?.completion_code && me.completion_url;
  let target;
  try {
    target = url && new URL(url);
  } catch {
    target = null;
  }
  if (!target || target.protocol !== "https:") return false;
  showStatus(
    "All done. Thank you!",
    "Taking you back to the study platform to confirm your work. If nothing happens, use the link above, or copy your completion code.",
    { kind: "redirect" },
  );
  ui.completionLink.href = target.href;
  ui.completionLink.hidden = false;
  announce("All done. Taking you back to the study platform.");
  setTimeout(() => window.location.assign(target.href), REDIRECT_AFTER_MS);
  return true;
}

function handleFatal(err) {
  resetPolling();
  if (err instanceof ApiError && err.code === "token_revoked") {
    // The organiser ended this worker's access (the API's 401 token_revoked): said as such,
    // not as a mistyped link, and again after a reload (the tab keeps the token to ask with).
    forgetToken(state.token, { keepInTab: true });
    stopResending();
    showStatus(
      "Your access to this study has ended",
      "The study's organiser has ended your access, so there are no more tasks for you here. You can close this page; if you think this is a mistake, contact the study's organiser.",
      { kind: "revoked" },
    );
    announce("Your access to this study has ended.");
  } else if (isFatal(err)) {
    forgetToken(state.token);
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
  const kept = keptPicks(task.task_id);
  if (kept) state.ranking.restore(kept);
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
      "Click or press it again to take one back; Enter sends a finished ranking. ⤢ (or Shift + key) shows an image full size." +
      (task.allow_ties ? " Tie (=) makes your next pick equal to the previous one." : "");
  showTiles(task, state.aspect, choose);
  render();
  // The countdown shows only once the images do (before, the page showed nothing to rank).
  startLease(task.expires_at, serverNow, receivedAt, leaseRanOut);
  // The images took this long to appear: the server extends the lease by as much (lease.js).
  reportShown(task.task_id, receivedAt, {
    credential: state.token,
    current: () => state.task?.task_id === task.task_id && !state.sending,
    onExpire: leaseRanOut,
  });
  // Focus on the page, not on a tile: Enter then sends, and never ranks the first image.
  ui.main.focus({ preventScroll: true });
}

function imageIndex(id) {
  return state.task.images.findIndex((image) => image.id === id);
}

const nameOf = (id) => label(imageIndex(id));

function thumbFor(id) {
  const image = state.task.images[imageIndex(id)];
  return image.thumb_url || image.url;
}

function render() {
  const { ranking } = state;
  markTiles(ranking, nameOf);
  renderTray(ranking, nameOf, thumbFor);
  savePicks(state.task.task_id, ranking);
  ui.submit.disabled = !ranking.complete || state.sending;
  ui.undo.disabled = ranking.count === 0;
  ui.tie.setAttribute("aria-pressed", String(state.tieMode));
  ui.tie.disabled = ranking.count === 0;
  document.body.classList.toggle("tie-mode", state.tieMode);
}

// ---------------------------------------------------------------- ranking actions

function choose(id, { viaKey = false } = {}) {
  if (!state.task || state.sending) return;
  const { ranking } = state;
  const key = nameOf(id);
  const was = ranking.rankOf(id);
  const result = ranking.toggle(id, { tie: state.tieMode });
  if (result === "picked") {
    const rank = ranking.rankOf(id);
    announce(ranking.isTied(id) ? `Image ${key} tied at ${ordinal(rank)}.` : `Image ${key} ranked ${ordinal(rank)}.`);
    state.tieMode = false;
  } else if (result === "removed") {
    // Said, with where it was: a key pressed for an image already ranked takes it back, which
    // the eye may miss (its tile out of view) and a screen reader would not tell.
    const msg = `Image ${key} removed from position ${was}.`;
    announce(msg);
    if (viaKey) toast(`${msg} Press ${key} again to rank it again.`);
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
  announce(`Image ${nameOf(id)} taken back.`);
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
  await send(task, ranking.toOrder());
}

// A ranking that could not be sent (offline, or the server failing) is sent again by itself,
// later each time, and at once when the browser says it is back online: the submit endpoint is
// retry-safe (the same order again stores nothing new). The page says so meanwhile.
const SEND_FIRST_MS = 1500;
const SEND_MAX_MS = 30000;
const OFFLINE_NOTE = "Offline — your ranking will be sent when you are back online.";
const resend = { timer: null, failures: 0, again: null, tried: false };

function stopResending() {
  clearTimeout(resend.timer);
  resend.timer = null;
  resend.again = null;
  resend.failures = 0;
  resend.tried = false;
  ui.sendStatus.textContent = "";
}

function resendLater(err, again) {
  resend.failures += 1;
  resend.tried = true;
  const wait = Math.min(SEND_MAX_MS, SEND_FIRST_MS * 2 ** (resend.failures - 1));
  const offline = err.status === 0 || navigator.onLine === false;
  const text = offline
    ? OFFLINE_NOTE
    : `Not sent yet: ${asSentence(err.message)} Trying again in ${Math.round(wait / 1000)} seconds.`;
  // Said once per change, not at every try.
  if (ui.sendStatus.textContent !== text) ui.sendStatus.textContent = text;
  resend.again = again;
  clearTimeout(resend.timer);
  resend.timer = setTimeout(again, wait);
}

// Back online: now, and the backoff starts over (the first try may still beat the network back).
function resendNow() {
  if (!resend.again) return;
  clearTimeout(resend.timer);
  resend.failures = 0;
  resend.again();
}

async function send(task, order) {
  resend.timer = null;
  try {
    await api(`/tasks/${encodeURIComponent(task.task_id)}/ranking`, {
      method: "POST",
      body: { order },
      credential: state.token,
    });
    state.doneThisVisit += 1;
    sessionStorage.setItem("rankloop.doneThisVisit", String(state.doneThisVisit));
    updateDoneCount();
    announce("Ranking sent. Loading the next set.");
    toast("Ranking sent. Thank you!");
  } catch (err) {
    if (isFatal(err)) {
      stopResending();
      state.sending = false;
      handleFatal(err);
      return;
    }
    if (err.status === 409 || err.status === 410 || err.status === 404) {
      if (resend.tried && err.status === 410) {
        // Sent again and again while offline, and the lease ran out meanwhile: said once the
        // next set is known (explainLostLease).
        lostLease = { taskId: task.task_id, hadPicks: true, offline: true };
      } else {
        toast(`${asSentence(err.message)} Moving on to the next set.`);
        announce(asSentence(err.message));
      }
    } else {
      // Keep the ranking on screen, and send it again by itself.
      resendLater(err, () => send(task, order));
      return;
    }
  }
  stopResending();
  forgetPicks(task.task_id);
  state.sending = false;
  await refreshMe().catch(handleFatal);
  await loadNext();
}

// The lease ran out: ask again. Nobody else took the round, so the same task comes back renewed
// with the picks kept (lease.js); or it went to someone else, and the page says so. Offline, the
// question waits until the page is back (waiting.js retries it), and so does the answer: the
// picks are kept until the server says whose the set is.
let lostLease = null; // {taskId, hadPicks, offline}: a lease that ran out, its fate not yet known

async function leaseRanOut() {
  if (state.sending) return;
  lostLease = {
    taskId: state.task.task_id,
    hadPicks: state.ranking.count > 0,
    offline: navigator.onLine === false,
  };
  closeViewer();
  await loadNext();
}

// The server answered loadNext (`next`: the task shown, or null): what became of a lost lease.
function explainLostLease(next) {
  if (!lostLease) return;
  const { taskId, hadPicks, offline } = lostLease;
  lostLease = null;
  let text;
  if (next?.task_id === taskId) {
    text = hadPicks
      ? "Time ran out, but this set is still yours: your picks are kept and the clock starts again."
      : "Time ran out, but this set is still yours: the clock starts again.";
  } else {
    forgetPicks(taskId);
    if (offline) {
      text = next
        ? "This round was given to someone else while you were offline; here is a new one."
        : "This round was given to someone else while you were offline.";
    } else {
      text = next
        ? "Time ran out and this set went to someone else. Here is another one."
        : "Time ran out and this set went to someone else.";
    }
  }
  toast(text);
  announce(text);
}

// ---------------------------------------------------------------- start

enableInput({ state, choose, undo, toggleTie, submit, render, nameOf, thumbFor });
initViewer({
  task: () => state.task,
  ranking: () => state.ranking,
  choose,
  name: label,
  alt: (index) => altText(state.task.images[index], index),
});
ui.submit.addEventListener("click", submit);
ui.undo.addEventListener("click", undo);
ui.tie.addEventListener("click", toggleTie);
// Back online: a ranking waiting to be sent goes now, and so does a check the page waits on.
window.addEventListener("online", () => {
  resendNow();
  checkNow();
});
$("#status-retry").addEventListener("click", () => {
  resetPolling();
  loadNext();
});
$("#copy-code").addEventListener("click", async () => {
  const ok = await copyText(ui.code.textContent);
  toast(ok ? "Completion code copied." : "Select the code and copy it by hand.");
});
let resizeFrame = 0;
window.addEventListener("resize", () => {
  cancelAnimationFrame(resizeFrame);
  resizeFrame = requestAnimationFrame(() => layoutGrid(state.task?.images.length, state.aspect));
});

async function main() {
  updateDoneCount();
  keepMturkAssignment(); // before the token and rejoin are read: they clear the fragment
  const rejoined = rejoinedToken();
  if (rejoined === "") {
    showStatus(
      "You have already joined this study",
      "Continue in the browser (or tab) where you first opened the study link: your place is kept there. If you cannot, contact the study's organiser.",
    );
    return;
  }
  // A study's link says which study (#study=): a second visit through it finds this token.
  const study = new URLSearchParams(window.location.hash.replace(/^#/, "")).get("study");
  state.token = rejoined || takeFragmentCredential("token", TOKEN_KEY);
  if (study && state.token) rememberCampaign(study, state.token);
  if (!state.token) {
    showStatus(
      "Open your personal task link",
      "This page needs the link you were given (it ends in #token=…). Open that link again to start.",
    );
    return;
  }
  // Both at once (a round trip saved on a slow connection): a token that is not valid is told
  // by loadNext, which gets the same 401.
  refreshMe().catch(() => null);
  await loadNext();
}

// A new link opened in the same tab only changes the fragment: no page load, so start over.
window.addEventListener("hashchange", () => {
  if (!/(^#|&)(token|rejoin)=/.test(window.location.hash)) return;
  resetPolling();
  stopLease();
  stopResending();
  state.sending = false;
  sessionStorage.removeItem(TOKEN_KEY);
  main();
});

main();
