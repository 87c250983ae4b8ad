// The JSON API, called with a Bearer credential kept in this tab's sessionStorage.

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details; // a 422's per-field problems: [{field, message}]
  }
}

export function apiRoot() {
  return document.body.dataset.apiRoot || "/api";
}

// The answer early.js got for this very request, once; else null.
function earlyAnswer(method, path, credential) {
  const early = window.rankloopEarly;
  if (!early || method !== "GET" || early.path !== path || early.credential !== credential) return null;
  window.rankloopEarly = null;
  return early.response;
}

// The answer: `{status, data, headers, receivedAt}` (receivedAt: performance.now() when it came).
export async function api(path, { method = "GET", body, credential, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response =
      (await earlyAnswer(method, path, credential)) ||
      (await fetch(`${apiRoot()}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
      }));
  } catch (err) {
    throw new ApiError(0, "network", "The server could not be reached. Check your connection.");
  }
  if (raw && response.ok) return response;
  if (!response.ok) {
    let code = `http_${response.status}`;
    let message = response.statusText || "Request failed";
    let details = null;
    try {
      const data = await response.json();
      if (data && data.error) {
        code = data.error.code || code;
        message = data.error.message || message;
        details = data.error.details ?? null;
      }
    } catch {
      // Not JSON (a proxy error page): keep the status text.
    }
    throw new ApiError(response.status, code, message, details);
  }
  const receivedAt = response.receivedAt ?? performance.now();
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  return { status: response.status, data, headers: response.headers, receivedAt };
}

// A credential from the URL fragment (#token=...) moves into sessionStorage and out of the
// address bar, so it is not left in history, screenshots or bookmarks.
export function takeFragmentCredential(name, storageKey) {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const value = params.get(name);
  if (value) {
    sessionStorage.setItem(storageKey, value);
    params.delete(name);
    const rest = params.toString();
    history.replaceState(null, "", window.location.pathname + window.location.search + (rest ? `#${rest}` : ""));
  }
  return sessionStorage.getItem(storageKey);
}
