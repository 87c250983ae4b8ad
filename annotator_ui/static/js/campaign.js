// One campaign on the owner dashboard: best image per round, the current round with its
// consensus, a round in detail (round_detail.js), progress plots, annotators
// (annotator_table.js), the controls and the downloads. Live: a server-sent event stream
// (live.js) says when the campaign or its round changed, and the page refreshes then; without
// a stream it polls every few seconds.

import { renderAnnotators } from "./annotator_table.js";
import { ApiError, api } from "./api.js";
import { $, clear, copyText, h } from "./dom.js";
import { renderItemsCard, setupItems } from "./items.js";
import { openLive } from "./live.js";
import {
  CLOSE_REASONS,
  FINAL,
  hideError,
  markRefreshed,
  ownerApi,
  ownerKey,
  rankingsOf,
  requireOwner,
  roundStatus,
  showError,
  statusBadge,
} from "./owner.js";
import { lineChart } from "./plot.js";
import { setupRoundDetail, updateRoundDetail } from "./round_detail.js";
import { renderVerdict } from "./verdict.js";

const campaignId = document.body.dataset.campaignId;
const base = `/campaigns/${encodeURIComponent(campaignId)}`;
const REFRESH_MS = 5000; // polling, without a stream
const LIVE_REFRESH_MS = 30000; // with a stream: only for what it does not announce (ages, last seen)

async function load() {
  const [campaign, annotators] = await Promise.all([ownerApi(base), allAnnotators()]);
  return { campaign: campaign.data, annotators };
}

// The annotator list comes a page at a time (next_offset: the next page, null on the last).
async function allAnnotators() {
  const rows = [];
  let offset = 0;
  while (offset !== null && offset !== undefined) {
    const { data } = await ownerApi(`${base}/annotators?limit=500&offset=${offset}`);
    rows.push(...(data?.annotators || []));
    offset = data?.next_offset;
  }
  return rows;
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
  renderStudyOf(campaign.study_id);
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

// The strip grows as rounds are decided: a figure already shown keeps its image element, so a
// refresh never loads an image again (a presigned URL's new query included).
const samePath = (a, b) => String(a || "").split("?")[0] === String(b || "").split("?")[0];

function stripFigure(strip, selector, make) {
  return strip.querySelector(selector) || make();
}

function setImage(img, url) {
  if (!samePath(img.getAttribute("src"), url)) img.src = url;
}

function renderStrip(campaign) {
  const strip = $("#strip");
  strip.querySelector("p.hint")?.remove();
  // Rounds still open or rendering have no winner yet; the strip shows decided rounds.
  const history = [...(campaign.history || [])]
    .filter((round) => round.best_image_url)
    .sort((a, b) => a.number - b.number);
  const figures = history.map((round) => {
    const figure = stripFigure(strip, `figure[data-round="${round.number}"]`, () =>
      h(
        "figure",
        { dataset: { round: round.number } },
        h("a", { target: "_blank", rel: "noopener noreferrer" },
          h("img", { alt: `Best image of round ${round.number} (full size)`, loading: "lazy" }),
        ),
        h("figcaption", {}),
      ),
    );
    // The thumbnail in the strip; the link opens the image full size.
    setImage(figure.querySelector("img"), round.best_thumb_url || round.best_image_url);
    figure.querySelector("a").href = round.best_image_url;
    const agreement = Number.isFinite(round.agreement) ? ` · ${round.agreement.toFixed(2)}` : "";
    // How many rankings the round took, and why it closed (adaptive quorum, stragglers).
    const took = round.close_reason ? ` · ${round.n_rankings} (${round.close_reason})` : "";
    figure.querySelector("figcaption").textContent = `Round ${round.number}${agreement}${took}`;
    return figure;
  });
  const currentUrl = campaign.current_best_image_url || campaign.best_image_url;
  if (currentUrl) {
    // The latest render's thumbnail (history's current_best_url), full size behind the link.
    const latest = [...(campaign.history || [])].reverse().find((round) => round.current_best_url);
    const current = stripFigure(strip, "figure.current", () =>
      h(
        "figure",
        { className: "current" },
        h("a", { target: "_blank", rel: "noopener noreferrer" },
          h("img", { alt: "Current best image (full size)" }),
        ),
        h("figcaption", { text: "Current best" }),
      ),
    );
    setImage(current.querySelector("img"), latest?.current_best_url || currentUrl);
    current.querySelector("a").href = currentUrl;
    figures.push(current);
  }
  // In order, the current best last; append moves a figure that is already there.
  for (const stale of [...strip.children]) if (!figures.includes(stale)) stale.remove();
  strip.append(...figures);
  if (!figures.length) strip.append(h("p", { className: "hint", text: "No round has finished yet." }));
}

function fmtAge(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  if (seconds < 120) return `${Math.max(0, Math.round(seconds))} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function renderRoundAge(round) {
  const cell = document.getElementById("round-age");
  if (cell) cell.textContent = fmtAge(round?.age_s);
}

function renderRound(campaign) {
  const round = campaign.current_round;
  const stats = clear($("#round-stats"));
  const grid = clear($("#round-images"));
  const hint = $("#round-hint");
  $("#round-title").textContent = FINAL.has(campaign.status) ? "Last round" : "Current round";
  if (!round) {
    hint.textContent = campaign.status === "draft" ? "Start the campaign to render the first round." : "No round is open.";
    return;
  }
  const consensus = round.consensus;
  const stat = (label, value) => stats.append(h("div", {}, h("dt", { text: label }), h("dd", { text: value })));
  stat("Round", round.number);
  stat("Kind", round.kind || "—");
  stat("Status", roundStatus(campaign.status, round.status));
  stat("Rankings", rankingsOf(round.rankings_count, round));
  if (round.close_reason) stat("Closed because", CLOSE_REASONS[round.close_reason] || round.close_reason);
  stat("Agreement", consensus ? fmtNumber(consensus.agreement) : "—");
  const live = !FINAL.has(campaign.status) && round.status === "open";
  stat("Deadline", live && round.deadline ? new Date(round.deadline).toLocaleTimeString() : "—");
  stat("In this status", "—");
  stats.lastElementChild.querySelector("dd").id = "round-age";
  // A stuck or failed round says why (render re-sent, deadline extended, an error).
  if (round.problem) stat("Problem", round.problem);
  hint.textContent = consensus
    ? "Images in consensus order, best first."
    : "Images as rendered; the consensus order appears when the round closes.";
  const images = round.images || [];
  const position = new Map((consensus?.order || []).map((id, i) => [id, i + 1]));
  const sorted = [...images].sort((a, b) => (position.get(a.id) ?? 1e9) - (position.get(b.id) ?? 1e9));
  for (const image of sorted) {
    const rank = position.get(image.id);
    const attention = image.role === "attention";
    // A verdict round shows the starting and the delivered image; others, candidates.
    const role = attention ? "attention check" : image.role === "candidate" ? "candidate" : `${image.role} image`;
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
          h("span", { className: attention ? "role-attention" : "", text: role }),
          h("a", { href: image.url, target: "_blank", rel: "noopener noreferrer", text: "full size" }),
        ),
      ),
    );
  }
}

function renderPlots(campaign, improvement) {
  // The verdict round is no step of the optimizer: its figures stay off these plots.
  const history = [...(campaign.history || [])].filter((r) => r.kind !== "verdict").sort((a, b) => a.number - b.number);
  const series = (pick) => history.map((round) => ({ x: round.number, y: pick(round) }));
  const num = (value) => (typeof value === "number" ? value : null);
  const strength = (improvement || []).map((p) => ({ x: p.round, y: p.strength, low: p.low, high: p.high }));
  clear($("#plots")).append(
    lineChart({ id: "plot-improvement", title: "Best image's strength vs round 0 (95% interval)", points: strength }),
    lineChart({ id: "plot-agreement", title: "Agreement", points: series((r) => num(r.agreement)), yMax: 1 }),
    lineChart({ id: "plot-moved", title: "Latent moved", points: series((r) => num(r.stats?.moved)) }),
    lineChart({ id: "plot-step", title: "Line-search step", points: series((r) => num(r.stats?.step)) }),
  );
}

// ---------------------------------------------------------------- annotators
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

// A study's prompt: back to the study, whose link and code its workers have.
function studyPage(studyId) {
  const root = document.body.dataset.apiRoot.replace(/\/api$/, "");
  return `${root}/dashboard/study/${encodeURIComponent(studyId)}`;
}

function renderStudyOf(studyId) {
  let line = $("#campaign-study");
  if (!studyId) {
    line?.remove();
    return;
  }
  if (line) return;
  line = h(
    "p",
    { id: "campaign-study", className: "hint" },
    "A prompt of a study: ",
    h("a", { href: studyPage(studyId), text: "the study's page" }),
    " (its workers join through the study's link and get the study's code).",
  );
  $("#campaign-settings").after(line);
}

// The recruitment link is optional in the API; the card stays hidden without it.
async function showRecruitLink(studyId) {
  try {
    const { data } = await ownerApi(`${base}/recruit`);
    if (!data?.link) return;
    if (data.enabled === false && studyId) {
      // A study's prompt recruits through the study's link, not its own.
      clear($("#recruit-link")).append(
        "Workers join through the study's link: ",
        h("a", { href: studyPage(studyId), text: "the study's page" }),
        " has it.",
      );
      $("#copy-recruit").hidden = true;
      $("#recruit > .hint").hidden = true;
      $("#recruit").hidden = false;
      return;
    }
    if (data.enabled === false) {
      // Off unless the campaign was created with "recruit": true; the link would be refused.
      $("#recruit-link").textContent =
        'Recruitment is off for this campaign: create it with "recruit": true to open a link for crowd platforms.';
      $("#copy-recruit").hidden = true;
      $("#recruit").hidden = false;
      return;
    }
    $("#recruit-link").textContent = data.link;
    $("#campaign-code").textContent = data.completion_code || "";
    showRecruitStats(data);
    $("#copy-recruit").addEventListener("click", async (event) => {
      event.target.textContent = (await copyText(data.link)) ? "Copied" : "Copy failed";
    });
    $("#recruit").hidden = false;
  } catch {
    // Not offered by this server: nothing to show.
  }
}

// Cap and joined count recruited participants only; links the owner made by hand are apart.
function showRecruitStats(data) {
  const count = (n) => (Number.isFinite(n) ? String(n) : "—");
  $("#recruit-cap").textContent = count(data.cap);
  $("#recruit-joined").textContent = count(data.joined);
  $("#recruit-owner-links").textContent = count(data.owner_links);
  $("#recruit-code").textContent = data.completion_code || "—";
  $("#recruit-url").textContent = data.completion_url || "";
  $("#recruit-url-row").hidden = !data.completion_url;
  $("#recruit-stats").hidden = false;
}

// Downloads need the Bearer header, so they are fetched and handed over as blob downloads.
async function download(path, filename) {
  try {
    const response = await api(`${base}${path}`, { credential: ownerKey(), raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    showError(err);
  }
}

// Every export the API offers, as its document lists them (`format` and `images` of the
// export operation): the list is written once, in service.datasets.
async function setupExports() {
  const form = $("#export-form");
  const formats = $("#export-format");
  const images = $("#export-images");
  try {
    const { data } = await api("/openapi.json");
    const operation = data.paths["/api/campaigns/{campaign_id}/export"].get;
    const values = (name) => operation.parameters.find((p) => p.name === name)?.schema?.enum || [];
    clear(formats).append(...values("format").map((value) => h("option", { value, text: value })));
    clear(images).append(...values("images").map((value) => h("option", { value, text: value })));
    images.value = operation.parameters.find((p) => p.name === "images")?.schema?.default || "url";
  } catch {
    // The document could not be read: the original export only.
    clear(formats).append(h("option", { value: "jsonl", text: "jsonl" }));
    clear(images).append(h("option", { value: "url", text: "url" }));
  }
  // Image bytes go only into Parquet; the JSON lines of rankings carry no image choice.
  const sync = () => {
    const parquet = formats.value.endsWith(".parquet");
    const embed = images.querySelector('option[value="embed"]');
    if (embed) embed.disabled = !parquet;
    if (!parquet && images.value === "embed") images.value = "url";
    images.disabled = formats.value === "jsonl";
  };
  formats.addEventListener("change", sync);
  sync();
  form.hidden = false;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const format = formats.value;
    const query = new URLSearchParams({ format });
    if (format !== "jsonl") query.set("images", images.value);
    const name = format === "jsonl" ? `rankloop-${campaignId}.jsonl` : `rankloop-${campaignId}-${format}`;
    download(`/export?${query}`, name);
  });
}

// ---------------------------------------------------------------- refresh loop

// Presigned image URLs change on every response; redrawing only what really changed keeps
// the images from reloading (and flickering) on each refresh.
const signatures = new Map();
function changed(section, value) {
  // Presigned URLs change their query, and a round's age every poll: neither is a change.
  const signature = JSON.stringify(value, (key, v) =>
    key === "age_s" ? undefined : typeof v === "string" && /url$/i.test(key) ? v.split("?")[0] : v,
  );
  if (signatures.get(section) === signature) return false;
  signatures.set(section, signature);
  return true;
}

let live = false;
let lastRefresh = 0;

function render({ campaign, annotators }) {
  lastRefresh = Date.now();
  hideError();
  $("#campaign").hidden = false;
  renderHead(campaign);
  renderItemsCard(campaign, base);
  if (changed("verdict", [campaign.verdict, campaign.status])) renderVerdict(campaign, { base, refresh });
  if (changed("strip", [campaign.history, campaign.best_image_url])) renderStrip(campaign);
  if (changed("round", [campaign.current_round, campaign.status])) renderRound(campaign);
  renderRoundAge(campaign.current_round);
  if (changed("plots", campaign.history)) {
    renderPlots(campaign, null);
    // The curve comes apart (it refits the rounds): drawn when it arrives.
    ownerApi(`${base}/improvement`)
      .then(({ data }) => renderPlots(campaign, data?.points))
      .catch(() => {});
  }
  updateRoundDetail(campaign);
  const firstRound = (campaign.history || []).find((round) => round.opened_at);
  renderAnnotators(annotators, firstRound?.opened_at || campaign.created_at, { base, refresh });
  markRefreshed(live);
}

// One refresh at a time; events that come during one ask for one more after it.
let running = null;
let again = false;
async function refresh() {
  if (running) {
    again = true;
    return running;
  }
  running = (async () => {
    try {
      do {
        again = false;
        render(await load());
      } while (again);
    } finally {
      running = null;
    }
  })();
  return running;
}

function goLive() {
  openLive({
    // A key the server turns down: the page's own requests say so; no stream.
    getTicket: async () => {
      try {
        const { data } = await ownerApi(`${base}/stream-ticket`, { method: "POST" });
        return data.stream_url ?? data.url;
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return null;
        throw err;
      }
    },
    events: ["campaign"],
    // Each event is a change (or a new stream's first state): fetch the campaign once more.
    onEvent: () => refresh().catch(showError),
    onLive: (on) => {
      live = on;
      document.body.dataset.live = on ? "stream" : "polling";
      markRefreshed(live, { now: false });
    },
  });
}

requireOwner(load, (data) => {
  setupRoundDetail(base);
  render(data);
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => control(button.dataset.action));
  }
  $("#add-form").addEventListener("submit", addAnnotators);
  setupItems(base, refresh);
  setupExports();
  // The delivered image of every round, full size, in a zip.
  $("#download-images").addEventListener("click", () =>
    download("/images.zip", `rankloop-${campaignId}-images.zip`),
  );
  const root = document.body.dataset.apiRoot.replace(/\/api$/, "");
  $("#duplicate").href = `${root}/dashboard?duplicate=${encodeURIComponent(campaignId)}`;
  showRecruitLink(data.campaign.study_id);
  document.body.dataset.live = "polling";
  goLive();
  setInterval(() => {
    if (document.hidden || (live && Date.now() - lastRefresh < LIVE_REFRESH_MS)) return;
    refresh().catch(showError);
  }, REFRESH_MS);
});
