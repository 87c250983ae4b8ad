// The lease on the task shown: its countdown, and the picks that outlive it. A lease that runs
// out costs the annotator nothing: the picks stay in this tab's storage (also across a reload),
// keyed by task id, and come back when the same task is shown again. Images that were slow to
// arrive cost nothing either: the server extends the lease by their loading time.

import { api } from "./api.js";
import { $ } from "./dom.js";

const PICKS = "rankloop.picks.";
const REPORT_FROM_S = 1; // a shorter wait is not worth a request
const node = $("#lease");
let timer = null;
let end = null; // performance.now() at which the lease runs out

// `expiresAt` is the server's; `serverNow` its clock when it answered (the Date header),
// `receivedAt` ours then. `onExpire` runs once when the lease has run out.
export function startLease(expiresAt, serverNow, receivedAt, onExpire) {
  stopLease();
  const at = Date.parse(expiresAt || "");
  if (!Number.isFinite(at)) return;
  end = receivedAt + (at - serverNow);
  node.hidden = false;
  const tick = () => {
    // `end` is the latest the lease may end (the server's clock may have read up to a second
    // past the Date header): shown, the earliest; acted on, the latest, so that a lease still
    // running on the server is never given up.
    const leftMs = end - performance.now();
    const left = Math.max(0, Math.ceil((leftMs - 1000) / 1000));
    node.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left`;
    node.classList.toggle("warn", left <= 60);
    if (leftMs <= 0) {
      stopLease();
      onExpire();
    }
  };
  tick();
  timer = setInterval(tick, 1000);
}

// Once the grid's images are in: if they took a second or more since the task arrived
// (`receivedAt`), tell the server (POST /tasks/<id>/shown), which extends the lease by as much
// (its clock started when it handed the task out), and count down to the new end while
// `current()` (the task is still on screen).
export async function reportShown(taskId, receivedAt, { credential, current, onExpire }) {
  const images = [...document.querySelectorAll("#grid img")];
  await Promise.all(
    images.map((img) =>
      img.complete
        ? null
        : new Promise((resolve) => {
            img.addEventListener("load", resolve, { once: true });
            img.addEventListener("error", resolve, { once: true });
          }),
    ),
  );
  const loadS = (performance.now() - receivedAt) / 1000;
  if (!current() || loadS < REPORT_FROM_S) return;
  try {
    const { data, headers, receivedAt: at } = await api(`/tasks/${encodeURIComponent(taskId)}/shown`, {
      method: "POST",
      body: { load_s: Math.round(loadS * 100) / 100 },
      credential,
    });
    if (!current() || !data) return;
    const date = Date.parse(headers.get("Date") || "");
    startLease(data.expires_at, Number.isFinite(date) ? date : Date.now(), at, onExpire);
  } catch {
    // The lease stays as it was, and so does the countdown on screen.
  }
}

export function stopLease() {
  clearInterval(timer);
  timer = null;
  end = null;
}

export function savePicks(taskId, ranking) {
  if (!taskId) return;
  if (ranking.count === 0) sessionStorage.removeItem(PICKS + taskId);
  else sessionStorage.setItem(PICKS + taskId, JSON.stringify(ranking.toJSON()));
}

// The picks kept for this task, if any; picks kept for any other task are dropped (a task is
// only ever shown again while its lease is renewed, so the others can never come back).
export function keptPicks(taskId) {
  let kept = null;
  for (const key of Object.keys(sessionStorage)) {
    if (!key.startsWith(PICKS)) continue;
    if (key === PICKS + taskId) {
      try {
        kept = JSON.parse(sessionStorage.getItem(key));
      } catch {
        kept = null;
      }
    } else sessionStorage.removeItem(key);
  }
  return kept;
}

export function forgetPicks(taskId) {
  sessionStorage.removeItem(PICKS + taskId);
}
