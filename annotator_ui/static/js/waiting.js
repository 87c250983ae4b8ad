// The page between tasks: which case the annotator is in (from `GET /api/me`'s `waiting`), and
// when to look again. A server-sent event stream (live.js, `GET /api/tasks/stream`) says when a
// round opens or closes or the campaign changes status, and the page looks at once; short
// polls with backoff remain, slower while the stream is live, and alone when it is not (no
// stream process and the web tier's few stream slots taken, an old proxy). A failed
// poll is retried the same way, and said so.

import { ApiError, api } from "./api.js";
import { TOKEN_KEY } from "./identity.js";
import { openLive } from "./live.js";
import { showStatus } from "./notices.js";

const FIRST_MS = 1500;
// A round renders and fills in seconds to minutes: look often. A paused or empty campaign may
// stay so for long: look less often.
const MAX_MS = { others_ranking: 6000, rendering: 6000 };
const SLOW_MAX_MS = 15000;
const RETRY_MAX_MS = 30000;
const LIVE_MS = 30000; // polling while the stream is live: only a safety net

let timer = null;
let delay = FIRST_MS;
let failures = 0;

// The stream while the page waits: opened by showWaiting, closed when a task is shown.
let stream = null;
let live = false;
let lastSeen = null; // the open rounds last announced, so that a reconnect is no news
let onChange = null; // the page's check, the latest showWaiting was given

function watch(check) {
  onChange = check;
  if (stream) return;
  lastSeen = null;
  stream = openLive({
    // No token, or one the server turned down: the page's own requests say so; no stream.
    getTicket: async () => {
      const credential = sessionStorage.getItem(TOKEN_KEY);
      if (!credential) return null;
      try {
        const { data } = await api("/tasks/stream-ticket", { method: "POST", credential });
        return data.stream_url ?? data.url;
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return null;
        throw err;
      }
    },
    events: ["waiting"],
    // A change (a round opened or closed, the campaign paused, resumed or ended): a task may
    // be there, or the reason to wait changed. A new stream's first state is news only when
    // it differs from the last one seen.
    onEvent: (_name, data) => {
      const seen = JSON.stringify(data);
      if (seen === lastSeen) return;
      const first = lastSeen === null;
      lastSeen = seen;
      if (!first || data.open_rounds > 0 || data.round_status === "open") onChange?.();
    },
    // The token was revoked (or the campaign deleted): look now, and the answer says which,
    // rather than wait out a slow poll under "keep it open".
    onGone: () => onChange?.(),
    onLive: (on) => {
      live = on;
      document.body.dataset.live = on ? "stream" : "polling";
    },
  });
}

function unwatch() {
  stream?.stop();
  stream = null;
  live = false;
}

export function stopPolling() {
  clearTimeout(timer);
  timer = null;
}

// A task was shown or the annotator asked by hand: the next wait starts short again (and
// opens a new stream: the token may have changed too).
export function resetPolling() {
  stopPolling();
  unwatch();
  delay = FIRST_MS;
  failures = 0;
}

let scheduled = null; // the check the timer runs

function schedule(check, ms) {
  stopPolling();
  scheduled = check;
  timer = setTimeout(check, ms);
}

// The check the page waits on, now (the browser came back online): no need to sit out a backoff.
export function checkNow() {
  if (timer === null || !scheduled) return;
  stopPolling();
  failures = 0; // the backoff starts over (this first try may still beat the network back)
  scheduled();
}

const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;

// What to say when no task came back; returns whether the page should keep looking.
export function showWaiting(me, check) {
  failures = 0;
  const waiting = me?.waiting ?? { reason: "none_open" };
  const code = me?.completion_code;
  const ended = ["finished", "quota_reached"].includes(waiting.reason);
  if (ended) unwatch();
  if (code && ended) {
    showStatus(
      "All done. Thank you!",
      "Copy your completion code above and paste it into the platform that sent you here. You can close this page.",
      { kind: "done" },
    );
    return false;
  }
  if (ended && me?.completion_withheld_reason === "attention_checks") {
    showStatus(
      "No completion code",
      "Too many of your rankings failed the attention check (the blurred, greyed copy belongs last), so this study issues you no completion code. You can close this page.",
      { kind: "withheld" },
    );
    return false;
  }
  if (waiting.reason === "finished") {
    showStatus(
      "This study has ended",
      "It ended before you finished a set, so there is no completion code for you. You can close this page; if your platform asks for a code, contact the study's organiser.",
      { kind: "ended" },
    );
    return false;
  }
  if (waiting.reason === "quota_reached") {
    showStatus("You have done all your sets", "There is nothing more for you here. Thank you! You can close this page.", {
      kind: "done",
    });
    return false;
  }
  const keepOpen = "This page shows the next set by itself as soon as it is ready: keep it open.";
  const said = {
    others_ranking: () => {
      const n = waiting.rankings_needed ?? 0;
      return n > 0
        ? [`Waiting for ${plural(n, "more person", "more people")}`, `The next set is made once ${plural(n, "more person has", "more people have")} ranked this one. ${keepOpen}`]
        : ["Waiting for others to finish", `Others are still ranking this set; the next one is made when they are done. ${keepOpen}`];
    },
    rendering: () => {
      const s = waiting.render_estimate_s;
      const estimate = s ? ` The last set took about ${Math.max(1, Math.round(s))} seconds.` : "";
      return ["New images are being made", `The next set of images is being rendered.${estimate} ${keepOpen}`];
    },
    paused: () => ["The study is paused", `The organiser has paused it for now. ${keepOpen}`],
    not_started: () => ["The study has not started yet", `The organiser has not started it yet. ${keepOpen}`],
    none_open: () => ["No task is open right now", "There is nothing to rank at the moment. This page checks again by itself; keep it open, or come back later."],
  }[waiting.reason] ?? (() => ["No task is open right now", keepOpen]);
  const [title, text] = said();
  showStatus(title, text, { retry: true, kind: waiting.reason });
  watch(check);
  schedule(check, live ? Math.max(delay, LIVE_MS) : delay);
  delay = Math.min(MAX_MS[waiting.reason] ?? SLOW_MAX_MS, delay * 2);
  return true;
}

// A request failed while the page was waiting or loading: say so and try again, later each time.
export function showRetrying(err, check) {
  failures += 1;
  const wait = Math.min(RETRY_MAX_MS, FIRST_MS * 2 ** failures);
  showStatus(
    "Connection problem",
    `${err?.message || "Something went wrong."} Trying again in ${Math.round(wait / 1000)} seconds (attempt ${failures + 1}); your place is kept.`,
    { retry: true, kind: "retrying" },
  );
  schedule(check, wait);
}
