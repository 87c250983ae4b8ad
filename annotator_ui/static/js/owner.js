// The owner key lives in this tab's sessionStorage and travels only as a Bearer header. No
// cookie is ever set, so a cross-site page has no credential to ride on (no CSRF surface).
// A link may carry the key in its fragment (`/dashboard#key=<owner key>`, what `rankloop up`
// prints): it moves into sessionStorage and out of the address bar, as `#token=` does on the
// task page. A fragment never reaches the server, so the key stays out of access logs.

import { ApiError, api, takeFragmentCredential } from "./api.js";
import { $ } from "./dom.js";

const STORAGE_KEY = "rankloop.ownerKey";

// Campaign statuses from which no round opens again.
export const FINAL = new Set(["stopped", "finished", "failed"]);

// A round's status as the dashboard says it: a round left open or rendering when its campaign
// ended is over all the same, and never shows as "open" once nobody can rank it.
export function roundStatus(campaignStatus, status) {
  const over = FINAL.has(campaignStatus) && (status === "open" || status === "rendering");
  return over ? `ended (campaign ${campaignStatus})` : status || "—";
}

export function ownerKey() {
  return takeFragmentCredential("key", STORAGE_KEY);
}

export function forgetKey() {
  sessionStorage.removeItem(STORAGE_KEY);
}

export function ownerApi(path, options = {}) {
  return api(path, { ...options, credential: ownerKey() });
}

// Show the key prompt until a key the API accepts is entered; then call onReady().
// `probe` is the first request made with the key; a 401 sends the owner back to the prompt.
export function requireOwner(probe, onReady) {
  const login = $("#login");
  const form = $("#login-form");
  const input = $("#owner-key");
  const error = $("#login-error");
  const logout = $("#logout");

  logout.addEventListener("click", () => {
    forgetKey();
    window.location.reload();
  });

  async function attempt() {
    try {
      const result = await probe();
      login.hidden = true;
      logout.hidden = false;
      onReady(result);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        forgetKey();
        login.hidden = false;
        error.textContent = "That key was not accepted.";
        error.hidden = false;
        input.focus();
      } else if (err instanceof ApiError && err.status === 403) {
        // A good key, another owner's campaign: the key stays in the tab for the owner's own.
        login.hidden = true;
        logout.hidden = false;
        throw err;
      } else {
        throw err;
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    sessionStorage.setItem(STORAGE_KEY, value);
    input.value = "";
    error.hidden = true;
    attempt().catch(showError);
  });

  if (ownerKey()) attempt().catch(showError);
  else {
    login.hidden = false;
    input.focus();
  }
}

export function showError(err) {
  const box = $("#error");
  box.textContent = err?.message || String(err);
  box.hidden = false;
}

export function hideError() {
  $("#error").hidden = true;
}

// "Updated <time>", after "Live ·" while a stream (live.js) tells the page of changes.
let refreshedAt = null;
export function markRefreshed(live = false, { now = true } = {}) {
  if (now || !refreshedAt) refreshedAt = new Date();
  const pill = $("#refreshed");
  pill.hidden = false;
  const time = refreshedAt.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  pill.textContent = `${live ? "Live · " : ""}Updated ${time}`;
}

export function statusBadge(node, status) {
  node.textContent = status || "unknown";
  node.className = `status-badge s-${String(status || "unknown").replace(/[^a-z_-]/gi, "")}`;
}

export function relativeTime(iso) {
  const t = Date.parse(iso || "");
  if (!Number.isFinite(t)) return "—";
  const seconds = Math.round((Date.now() - t) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(t).toLocaleDateString();
}

// Why a round closed (responses.Round.close_reason), as the owner reads it.
export const CLOSE_REASONS = {
  settled: "settled (its decision was sure)",
  cap: "quorum in",
  deadline: "deadline (unsettled)",
  straggler: "straggler (did not wait for the slowest)",
};

// "2 / 3", or "2 / 2 (up to 5)" for an adaptive quorum still below its cap.
export function rankingsOf(count, round) {
  const cap = round.quorum_cap && round.quorum_cap > round.quorum ? ` (up to ${round.quorum_cap})` : "";
  return `${count ?? 0} / ${round.quorum ?? "?"}${cap}`;
}
