// One round in detail on the campaign page: its images (lettered A, B, ...), every annotator's
// ranking side by side with the consensus, the attention check, and the optimizer's figures.
// Data: GET /api/campaigns/<id>/rounds/<n>.

import { $, clear, h } from "./dom.js";
import { figures, whatMoved } from "./optimizer_words.js";
import { CLOSE_REASONS, ownerApi, rankingsOf, roundStatus, showError } from "./owner.js";

let base = "";
let follow = true; // show the latest round until the owner picks another one
let campaignStatus = null;
let shown = null; // the signature of what is on screen, to redraw (and reload images) only on change

const letter = (i) => (i < 26 ? String.fromCharCode(65 + i) : `#${i + 1}`);
const withoutQuery = (key, v) => (typeof v === "string" && /url$/i.test(key) ? v.split("?")[0] : v);

function fmt(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (value === null || value === undefined) return "—";
  return JSON.stringify(value);
}

function thumb(image, letters) {
  return h(
    "figure",
    { dataset: { imageId: image.id } },
    h("img", { src: image.thumb_url, alt: "", loading: "lazy", width: 52, height: 52 }),
    h("figcaption", { text: letters.get(image.id) ?? "?" }),
  );
}

function orderCell(order, images, letters) {
  const byId = new Map(images.map((image) => [image.id, image]));
  const item = (id) => (byId.has(id) ? thumb(byId.get(id), letters) : h("span", { text: "?" }));
  return h(
    "div",
    { className: "order" },
    order.map((entry) =>
      Array.isArray(entry) ? h("div", { className: "tie", title: "tied" }, entry.map(item)) : item(entry),
    ),
  );
}

function render(round) {
  const letters = new Map(round.images.map((image, i) => [image.id, letter(i)]));
  const stats = clear($("#detail-stats"));
  const stat = (label, value) => stats.append(h("div", {}, h("dt", { text: label }), h("dd", { text: value })));
  stat("Status", roundStatus(campaignStatus, round.status));
  stat("Kind", round.kind || "—");
  stat("Rankings", rankingsOf(round.rankings.length, round));
  if (round.close_reason) stat("Closed because", CLOSE_REASONS[round.close_reason] || round.close_reason);
  stat("Agreement", fmt(round.consensus?.agreement));
  // Whether people told this round's images apart (agreement above chance); the optimizer
  // widens its perturbations after a round they could not.
  stat("Images distinguishable", fmt(round.consensus?.distinguishable));
  stat("Consensus method", round.consensus?.method || "—");
  stat("Render", Number.isFinite(round.render_seconds) ? `${round.render_seconds.toFixed(1)} s` : "—");
  // The optimizer's figures for the round, named for a reader; what moved and why, in words.
  for (const [name, value] of figures(round.stats)) stat(name, value);
  $("#detail-why").textContent = whatMoved(round);

  clear($("#detail-legend")).append(
    ...round.images.map((image, i) =>
      h(
        "figure",
        { dataset: { imageId: image.id } },
        h("a", { href: image.url, target: "_blank", rel: "noopener noreferrer" },
          h("img", {
            src: image.thumb_url,
            alt: `Image ${letter(i)}: ${image.role === "attention" ? "attention check" : `candidate ${image.index}`} (full size)`,
            loading: "lazy",
          }),
        ),
        h("figcaption", { text: `${letter(i)}${image.role === "attention" ? " · attention" : ""}` }),
      ),
    ),
  );

  const body = clear($("#detail-rankings tbody"));
  const weights = round.consensus?.weights || {};
  if (round.consensus) {
    body.append(
      h(
        "tr",
        { className: "consensus" },
        h("th", { scope: "row", text: "Consensus" }),
        h("td", {}, orderCell(round.consensus.order, round.images, letters)),
        h("td", { text: "—" }),
        h("td", { text: "—" }),
        h("td", { text: round.closed_at ? new Date(round.closed_at).toLocaleTimeString() : "—" }),
      ),
    );
  }
  for (const ranking of round.rankings) {
    const who = ranking.participant_id || ranking.annotator_id;
    const weight = weights[ranking.annotator_id];
    const passed = ranking.attention_passed;
    body.append(
      h(
        "tr",
        { className: ranking.excluded ? "excluded" : "", dataset: { annotatorId: ranking.annotator_id } },
        h("th", { scope: "row" }, who, ranking.excluded ? h("span", { className: "flag", text: "excluded" }) : null),
        h("td", {}, orderCell(ranking.order, round.images, letters)),
        h("td", {},
          passed === null
            ? "—"
            : h("span", { className: passed ? "badge-ok" : "badge-bad", text: passed ? "passed" : "failed" }),
        ),
        h("td", { text: Number.isFinite(weight) ? weight.toFixed(2) : "—" }),
        h("td", { text: `${new Date(ranking.created_at).toLocaleTimeString()}${ranking.late ? " (late)" : ""}` }),
      ),
    );
  }
  $("#detail-empty").hidden = round.rankings.length > 0;
  $("#detail-rankings").hidden = body.children.length === 0;
}

async function load(number) {
  const { data } = await ownerApi(`${base}/rounds/${number}`);
  // A slower answer for a round no longer picked (a refresh's, racing the owner's pick) is
  // dropped: it would replace the picked round's rankings.
  if (String(number) !== $("#round-pick").value) return;
  const signature = JSON.stringify(data, withoutQuery);
  if (signature === shown) return;
  shown = signature;
  render(data);
}

// The rounds to pick from, after every refresh of the campaign; the round on screen is
// fetched again while it can still change (open or rendering), never when it is decided.
export function updateRoundDetail(campaign) {
  if (campaignStatus !== campaign.status) shown = null; // the status line changes with it
  campaignStatus = campaign.status;
  const rounds = [...(campaign.history || [])].sort((a, b) => a.number - b.number);
  $("#detail-card").hidden = rounds.length === 0;
  if (!rounds.length) return;
  const pick = $("#round-pick");
  const before = pick.value;
  if (pick.options.length !== rounds.length) {
    clear(pick).append(...rounds.map((r) => h("option", { value: r.number, text: label(r) })));
  } else {
    rounds.forEach((r, i) => {
      pick.options[i].textContent = label(r);
    });
  }
  pick.value = follow ? String(rounds.at(-1).number) : before;
  const current = rounds.find((r) => String(r.number) === pick.value);
  const settled = current && current.status === "closed" && shown && pick.value === before;
  if (!settled) load(pick.value).catch(showError);
}

function label(round) {
  return `Round ${round.number} (${roundStatus(campaignStatus, round.status)})`;
}

export function setupRoundDetail(campaignBase) {
  base = campaignBase;
  const pick = $("#round-pick");
  pick.addEventListener("change", () => {
    follow = pick.selectedIndex === pick.options.length - 1;
    load(pick.value).catch(showError);
  });
}
