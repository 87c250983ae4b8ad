// The campaign page's annotator table: reliability weight, throughput, flags, and revoking an
// annotator (their token answers 401 from then on; what they gave stays, marked).

import { $, clear, h } from "./dom.js";
import { showAnnotator } from "./annotator_view.js";
import { ownerApi, relativeTime, showError } from "./owner.js";

// Rankings per hour between the annotator's arrival (or, when the API does not say, the
// campaign's first round) and their last ranking.
function perHour(annotator, campaignStart) {
  const since = Date.parse(annotator.created_at || annotator.first_seen || campaignStart || "");
  const until = Date.parse(annotator.last_seen || "");
  if (!Number.isFinite(since) || !Number.isFinite(until) || !annotator.n_rankings) return "—";
  const hours = Math.max((until - since) / 3.6e6, 1 / 60);
  return (annotator.n_rankings / hours).toFixed(1);
}

export function renderAnnotators(annotators, campaignStart, page) {
  const body = clear($("#annotators tbody"));
  $("#annotators-empty").hidden = annotators.length > 0;
  $("#annotators").hidden = annotators.length === 0;
  const sorted = [...annotators].sort((a, b) => (b.n_rankings ?? 0) - (a.n_rankings ?? 0));
  for (const a of sorted) {
    const weight = Number.isFinite(a.weight) ? a.weight : null;
    const flags = Array.isArray(a.flags) ? a.flags : a.flags ? [a.flags] : [];
    body.append(
      h(
        "tr",
        { dataset: { annotatorId: a.id } },
        h(
          "td",
          {},
          h("button", {
            type: "button",
            className: "link-button",
            text: a.participant_id || a.id,
            "aria-label": `Show annotator ${a.participant_id || a.id}`,
            onclick: () => showAnnotator(page.base, a.id),
          }),
        ),
        h(
          "td",
          {},
          h("span", { className: "meter", "aria-hidden": "true" }, meterFill(weight)),
          weight === null ? "—" : weight.toFixed(2),
        ),
        h("td", { className: "num", text: a.n_rankings ?? 0 }),
        h("td", { className: "num", text: perHour(a, campaignStart) }),
        h("td", { className: "num", text: a.n_attention_failed ?? 0 }),
        h("td", { text: relativeTime(a.last_seen) }),
        h(
          "td",
          {},
          // A study worker ranks across the study's campaigns: this one's rankings are shown.
          a.study_id && h("span", { className: "flag flag-info", text: "study worker" }),
          flags.map((flag) => h("span", { className: "flag", text: flag })),
        ),
        h("td", {}, access(a, page)),
      ),
    );
    if (a.revoked_at) body.lastElementChild.classList.add("revoked");
  }
}

// Revoked: their token answers 401 from then on; what they gave stays, marked.
function access(a, page) {
  if (a.revoked_at) return a.excluded ? "revoked, excluded from consensus" : "revoked";
  if (a.pool) return "pool";
  const who = a.participant_id || a.id;
  return h("button", {
    type: "button",
    className: "btn btn-small btn-danger",
    text: "Revoke",
    "aria-label": `Revoke annotator ${who}`,
    onclick: () => revoke(a.id, who, page),
  });
}

async function revoke(annotatorId, who, { base, refresh }) {
  const exclude = $("#revoke-exclude").checked;
  const also = exclude ? " Their rankings will count in no later consensus." : "";
  if (!window.confirm(`Revoke ${who}? Their link stops working.${also}`)) return;
  try {
    await ownerApi(`${base}/annotators/${encodeURIComponent(annotatorId)}/revoke`, {
      method: "POST",
      body: { exclude },
    });
    await refresh();
  } catch (err) {
    showError(err);
  }
}

// Weights are log-odds of agreeing with the crowd: 0 is a coin flip, about 4 the most
// reliable; a negative weight (a contrarian) shows as an empty bar and a flag.
const WEIGHT_FULL = 4;
function meterFill(weight) {
  const fill = h("span", {});
  fill.style.width = `${Math.round(Math.min(1, Math.max(0, (weight ?? 0) / WEIGHT_FULL)) * 100)}%`;
  return fill;
}

