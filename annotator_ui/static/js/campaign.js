// One campaign on the owner dashboard: best image per round, the current round with its
// consensus, progress plots, annotators and the controls.

import { api } from "./api.js";
import { $, clear, copyText, h } from "./dom.js";
import {
  hideError,
  markRefreshed,
  ownerApi,
  ownerKey,
  relativeTime,
  requireOwner,
  showError,
  statusBadge,
} from "./owner.js";
import { lineChart } from "./plot.js";

const campaignId = document.body.dataset.campaignId;
const base = `/campaigns/${encodeURIComponent(campaignId)}`;
const REFRESH_MS = 5000;
const FINAL = new Set(["stopped", "finished", "failed"]);

async function load() {
  const [campaign, annotators] = await Promise.all([ownerApi(base), ownerApi(`${base}/annotators`)]);
  return { campaign: campaign.data, annotators: annotators.data?.annotators || [] };
}

function fmtNumber(value, digits = 2) {
  return Number.isFinite(value) ? value.toFixed(digits) : "—";
}

// ---------------------------------------------------------------- head and controls

function renderHead(campaign) {
  $("#campaign-name").textContent = campaign.name || campaign.id;
  document.title = `${campaign.name || campaign.id} · rankloop`;
  statusBadge($("#campaign-status"), campaign.status);
  $("#campaign-prompt").textContent = campaign.prompt || "";
  const s = campaign.settings || {};
  const parts = [
    s.generator && `generator ${s.generator}`,
    s.m && `${s.m} images per round`,
    s.k ? `top-${s.k} tasks` : "full rankings",
    s.annotators_per_round && `quorum ${s.annotators_per_round}`,
    s.rounds && `budget ${s.rounds} rounds`,
    s.allow_ties && "ties allowed",
    s.attention_check && "attention checks",
  ].filter(Boolean);
  $("#campaign-settings").textContent = parts.join(" · ");
  const status = campaign.status;
  const allowed = {
    start: status === "draft",
    pause: status === "running",
    resume: status === "paused" || status === "failed",
    stop: !FINAL.has(status) || status === "failed",
  };
  for (const button of document.querySelectorAll("[data-action]")) {
    button.disabled = !allowed[button.dataset.action];
  }
}

async function control(action) {
  if (action === "stop" && !window.confirm("Stop this campaign? It cannot be resumed.")) return;
  try {
    await ownerApi(`${base}/${action}`, { method: "POST" });
    await refresh();
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------- rounds

function renderStrip(campaign) {
  const strip = clear($("#strip"));
  // Rounds still open or rendering have no winner yet; the strip shows decided rounds.
  const history = [...(campaign.history || [])]
    .filter((round) => round.best_image_url)
    .sort((a, b) => a.number - b.number);
  for (const round of history) {
    const caption = `Round ${round.number}${Number.isFinite(round.agreement) ? ` · ${round.agreement.toFixed(2)}` : ""}`;
    strip.append(
      h(
        "figure",
        { dataset: { round: round.number } },
        h("img", { src: round.best_image_url, alt: `Best image after round ${round.number}`, loading: "lazy" }),
        h("figcaption", { text: caption }),
      ),
    );
  }
  if (campaign.current_best_image_url || campaign.best_image_url) {
    strip.append(
      h(
        "figure",
        { className: "current" },
        h("img", { src: campaign.current_best_image_url || campaign.best_image_url, alt: "Current best image" }),
        h("figcaption", { text: "Current best" }),
      ),
    );
  }
  if (!strip.children.length) strip.append(h("p", { className: "hint", text: "No round has finished yet." }));
}

function renderRound(campaign) {
  const round = campaign.current_round;
  const stats = clear($("#round-stats"));
  const grid = clear($("#round-images"));
  const hint = $("#round-hint");
  if (!round) {
    hint.textContent = campaign.status === "draft" ? "Start the campaign to render the first round." : "No round is open.";
    return;
  }
  const consensus = round.consensus;
  const stat = (label, value) => stats.append(h("div", {}, h("dt", { text: label }), h("dd", { text: value })));
  stat("Round", round.number);
  stat("Kind", round.kind || "—");
  stat("Status", round.status || "—");
  stat("Rankings", `${round.rankings_count ?? 0} / ${round.quorum ?? "?"}`);
  stat("Agreement", consensus ? fmtNumber(consensus.agreement) : "—");
  stat("Deadline", round.deadline ? new Date(round.deadline).toLocaleTimeString() : "—");
  hint.textContent = consensus
    ? "Images in consensus order, best first."
    : "Images as rendered; the consensus order appears when the round closes.";
  const images = round.images || [];
  const position = new Map((consensus?.order || []).map((id, i) => [id, i + 1]));
  const sorted = [...images].sort((a, b) => (position.get(a.id) ?? 1e9) - (position.get(b.id) ?? 1e9));
  for (const image of sorted) {
    const rank = position.get(image.id);
    const attention = image.role === "attention";
    grid.append(
      h(
        "figure",
        { dataset: { imageId: image.id } },
        h("img", {
          src: image.thumb_url || image.url,
          alt: `${attention ? "Attention check" : "Candidate"} image${rank ? `, consensus rank ${rank}` : ""}`,
          loading: "lazy",
        }),
        rank ? h("span", { className: "pos", text: rank }) : null,
        h(
          "figcaption",
          {},
          h("span", { className: attention ? "role-attention" : "", text: attention ? "attention check" : "candidate" }),
          h("a", { href: image.url, target: "_blank", rel: "noopener noreferrer", text: "full size" }),
        ),
      ),
    );
  }
}

function renderPlots(campaign) {
  const history = [...(campaign.history || [])].sort((a, b) => a.number - b.number);
  const series = (pick) => history.map((round) => ({ x: round.number, y: pick(round) }));
  const num = (value) => (typeof value === "number" ? value : null);
  clear($("#plots")).append(
    lineChart({ id: "plot-agreement", title: "Agreement", points: series((r) => num(r.agreement)), yMax: 1 }),
    lineChart({ id: "plot-moved", title: "Latent moved", points: series((r) => num(r.stats?.moved)) }),
    lineChart({ id: "plot-step", title: "Line-search step", points: series((r) => num(r.stats?.step)) }),
  );
}

// ---------------------------------------------------------------- annotators

// Rankings per hour between the annotator's arrival (or, when the API does not say, the
// campaign's first round) and their last ranking.
function perHour(annotator, campaignStart) {
  const since = Date.parse(annotator.created_at || annotator.first_seen || campaignStart || "");
  const until = Date.parse(annotator.last_seen || "");
  if (!Number.isFinite(since) || !Number.isFinite(until) || !annotator.n_rankings) return "—";
  const hours = Math.max((until - since) / 3.6e6, 1 / 60);
  return (annotator.n_rankings / hours).toFixed(1);
}

function renderAnnotators(annotators, campaignStart) {
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
        h("td", {}, a.participant_id || a.id),
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
        h("td", {}, flags.map((flag) => h("span", { className: "flag", text: flag }))),
      ),
    );
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

async function addAnnotators(event) {
  event.preventDefault();
  const count = Number($("#add-count").value);
  if (!(count >= 1)) return;
  try {
    const { data } = await ownerApi(`${base}/annotators`, { method: "POST", body: { count } });
    const created = data?.annotators || [];
    const list = h("ol", {});
    for (const annotator of created) {
      list.append(
        h(
          "li",
          {},
          h("code", { text: annotator.link }),
          h("button", {
            type: "button",
            className: "btn btn-small",
            text: "Copy",
            "aria-label": `Copy link for annotator ${annotator.id}`,
            onclick: async (e) => {
              e.target.textContent = (await copyText(annotator.link)) ? "Copied" : "Copy failed";
            },
          }),
        ),
      );
    }
    clear($("#new-links")).append(
      h("p", { className: "hint", text: `${created.length} new links. Each is shown once: copy them now.` }),
      list,
    );
    const copyAll = $("#copy-links");
    copyAll.hidden = created.length === 0;
    copyAll.onclick = async () => {
      const ok = await copyText(created.map((a) => a.link).join("\n"));
      copyAll.textContent = ok ? "Copied all" : "Copy failed";
    };
    await refresh();
  } catch (err) {
    showError(err);
  }
}

// The recruitment link is optional in the API; the card stays hidden without it.
async function showRecruitLink() {
  try {
    const { data } = await ownerApi(`${base}/recruit`);
    if (!data?.link) return;
    $("#recruit-link").textContent = data.link;
    $("#campaign-code").textContent = data.completion_code || "";
    $("#copy-recruit").addEventListener("click", async (event) => {
      event.target.textContent = (await copyText(data.link)) ? "Copied" : "Copy failed";
    });
    $("#recruit").hidden = false;
  } catch {
    // Not offered by this server: nothing to show.
  }
}

// The export needs the Bearer header, so it is fetched and handed over as a blob download.
async function exportRankings() {
  try {
    const response = await api(`${base}/export?format=jsonl`, { credential: ownerKey(), raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `rankloop-${campaignId}.jsonl` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    showError(err);
  }
}

// ---------------------------------------------------------------- refresh loop

// Presigned image URLs change on every response; redrawing only what really changed keeps
// the images from reloading (and flickering) on each refresh.
const signatures = new Map();
function changed(section, value) {
  const signature = JSON.stringify(value, (key, v) =>
    typeof v === "string" && /url$/i.test(key) ? v.split("?")[0] : v,
  );
  if (signatures.get(section) === signature) return false;
  signatures.set(section, signature);
  return true;
}

function render({ campaign, annotators }) {
  hideError();
  $("#campaign").hidden = false;
  renderHead(campaign);
  if (changed("strip", [campaign.history, campaign.best_image_url])) renderStrip(campaign);
  if (changed("round", [campaign.current_round, campaign.status])) renderRound(campaign);
  if (changed("plots", campaign.history)) renderPlots(campaign);
  const firstRound = (campaign.history || []).find((round) => round.opened_at);
  renderAnnotators(annotators, firstRound?.opened_at || campaign.created_at);
  markRefreshed();
}

async function refresh() {
  render(await load());
}

requireOwner(load, (data) => {
  render(data);
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => control(button.dataset.action));
  }
  $("#add-form").addEventListener("submit", addAnnotators);
  $("#export").addEventListener("click", exportRankings);
  showRecruitLink();
  setInterval(() => {
    if (!document.hidden) refresh().catch(showError);
  }, REFRESH_MS);
});
