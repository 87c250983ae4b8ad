// Live updates by server-sent events (service/api/stream.py), for pages that otherwise poll.
//
// EventSource cannot send an Authorization header, and a key never goes in a URL: each
// connection first asks for a short-lived ticket with the Bearer header (`getTicket`), then
// opens the stream's URL with it (the ticket's `stream_url`: the stream process, perhaps on
// another origin, which allows that). The server ends a stream after about 25 s with an `end`
// event; a new ticket and stream follow at once. When streams fail (an old proxy, a server at
// its stream limit, no EventSource) the page is told (`onLive(false)`) and keeps polling; the
// stream is tried again later, less often each time.

import { apiRoot } from "./api.js";

const RETRY_FIRST_MS = 2000;
const RETRY_MAX_MS = 60000;

// The stream URL (from the server: absolute, or relative to it) against the API's origin.
function streamUrl(url) {
  const origin = new URL(apiRoot(), window.location.href).origin;
  return new URL(url, origin).toString();
}

// Open a ticketed stream; `onEvent(name, data)` for each of `events`. `getTicket` resolves to
// the stream's URL, or to null when the credential is no good (no stream then, and no retry).
// Returns { stop() }.
// `onGone()`: the credential was refused or revoked (no more stream); the page's own request
// then says why.
export function openLive({ getTicket, events, onEvent, onLive = () => {}, onGone = () => {} }) {
  let source = null;
  let timer = null;
  let failures = 0;
  let stopped = false;

  function close() {
    if (source) source.close();
    source = null;
  }

  function later() {
    close();
    onLive(false);
    if (stopped) return;
    failures += 1;
    clearTimeout(timer);
    timer = setTimeout(connect, Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** failures));
  }

  async function connect() {
    if (stopped) return;
    if (typeof window.EventSource !== "function") {
      onLive(false);
      return; // polling only
    }
    let url;
    try {
      const ticketed = await getTicket();
      if (ticketed === null) {
        stopped = true;
        onLive(false);
        onGone();
        return;
      }
      url = streamUrl(ticketed);
    } catch {
      later();
      return;
    }
    if (stopped) return;
    const opened = new EventSource(url);
    source = opened;
    opened.addEventListener("open", () => {
      failures = 0;
      onLive(true);
    });
    for (const name of events) {
      opened.addEventListener(name, (event) => {
        let data = null;
        try {
          data = JSON.parse(event.data);
        } catch {
          return; // not ours
        }
        onEvent(name, data);
      });
    }
    opened.addEventListener("end", (event) => {
      close();
      let reason = "lifetime";
      try {
        reason = JSON.parse(event.data).reason;
      } catch {
        // keep the default
      }
      if (reason === "gone") {
        onLive(false);
        onGone();
      } else connect(); // a fresh ticket: the old one may have expired
    });
    // A stream refused (401, 503) or dropped: EventSource would retry the same, perhaps
    // expired, ticket; a new one is asked for later instead.
    opened.addEventListener("error", () => {
      if (source === opened) later();
    });
  }

  connect();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      close();
    },
  };
}
