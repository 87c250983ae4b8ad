// The lease on the task shown: its countdown, and the picks that outlive it. A lease that runs
// out costs the annotator nothing: the picks stay in this tab's storage (also across a reload),
// keyed by task id, and come back when the same task is shown again.

import { $ } from "./dom.js";

const PICKS = "rankloop.picks.";
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
