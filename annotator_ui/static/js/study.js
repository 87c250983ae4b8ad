// One study: its prompts' progress at a glance (a grid of current best images, sortable), its
// link and completion code, what its rankings cost and the estimate to finish, and its controls.

import { apiRoot } from "./api.js";
import { $, clear, h, plural } from "./dom.js";
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
import { intervalBar } from "./verdict.js";

const studyId = document.body.dataset.studyId;
const path = `/studies/${encodeURIComponent(studyId)}`;
const pageRoot = () => apiRoot().replace(/\/api$/, "");
let current = null;

const ORDER = {
  position: () => 0,
  rounds: (a, b) => a.rounds_closed - b.rounds_closed,
  rankings: (a, b) => a.rankings - b.rankings,
  status: (a, b) => a.status.localeCompare(b.status),
};

function money(value) {
  return value === null || value === undefined ? "—" : value.toFixed(2);
}

function seconds(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} s`;
}

function stat(list, label, value) {
  list.append(h("div", {}, h("dt", { text: label }), h("dd", { text: value })));
}

const pct = (value) => `${Math.round(100 * value)}%`;
const share = (value) => (value === null || value === undefined ? "—" : pct(value));

function duration(value) {
  if (!value) return "—";
  if (value < 60) return "under a minute";
  const minutes = Math.round(value / 60);
  return minutes < 60 ? `${minutes} min` : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// The study's verdict leads the page: the pooled share, its interval, and how the prompts split.
function renderVerdict(verdict) {
  $("#verdict-summary").textContent = verdict.summary;
  const figure = clear($("#verdict-figure"));
  const stats = clear($("#verdict-stats"));
  if (verdict.share === null || verdict.share === undefined) return;
  figure.append(intervalBar(verdict));
  stat(stats, "Prefer delivered", String(verdict.prefer_delivered));
  stat(stats, "Prefer start", String(verdict.prefer_start));
  stat(stats, "Ties", String(verdict.ties));
  stat(stats, "Prompts better (interval above 50%)", String(verdict.campaigns_above));
  stat(stats, "Prompts worse (interval below 50%)", String(verdict.campaigns_below));
  stat(stats, "Prompts undecided", String(verdict.campaigns_undecided));
  stat(stats, "Prompts without answers", String(verdict.campaigns_unanswered));
}

function verdictLine(verdict) {
  if (verdict.share === null || verdict.share === undefined) return "no verdict yet";
  return `verdict ${pct(verdict.share)} (${pct(verdict.low)}–${pct(verdict.high)}, n=${verdict.n})`;
}

function renderPrompts(campaigns) {
  const list = clear($("#prompts"));
  const sorted = [...campaigns].sort(ORDER[$("#sort").value] || ORDER.position);
  for (const campaign of sorted) {
    const href = `${pageRoot()}/dashboard/${encodeURIComponent(campaign.id)}`;
    const badge = h("span", {});
    statusBadge(badge, campaign.status);
    const image = campaign.best_image_url
      ? h("img", { src: campaign.best_image_url, alt: `Current best image for: ${campaign.prompt}`, loading: "lazy" })
      : h("span", { className: "hint", text: "no image yet" });
    list.append(
      h(
        "li",
        { className: "study-tile" },
        h("a", { href }, image),
        h("p", { className: "prompt", text: campaign.prompt }),
        h("p", { className: "hint" }, badge, ` ${plural(campaign.rounds_closed, "round", "rounds")} closed · ${plural(campaign.rankings, "ranking", "rankings")}`),
        h("p", { className: "hint verdict-line", text: verdictLine(campaign.verdict) }),
      ),
    );
  }
}

function render(study) {
  hideError();
  current = study;
  $("#study").hidden = false;
  $("#study-name").textContent = study.name || study.id;
  statusBadge($("#study-status"), study.status);
  $("#study-link").textContent = study.recruit ? study.link : "closed (recruit is off)";
  $("#study-code").textContent = `Completion code ${study.completion_code} after ${study.tasks_per_worker} tasks${study.completion_url ? ` · workers are sent to ${study.completion_url}` : ""}`;
  renderVerdict(study.verdict);
  const stats = clear($("#study-stats"));
  stat(stats, "Prompts", String(study.prompts));
  stat(stats, "Rounds closed", String(study.rounds_closed));
  stat(stats, "Rankings", String(study.rankings));
  stat(stats, "Rankings in the last hour", String(study.costs.rankings_last_hour));
  stat(stats, "Workers", `${study.workers} / ${study.recruit_cap}`);
  stat(stats, "Median task time", seconds(study.costs.task_s_median));
  stat(stats, "Spent so far", money(study.costs.spent));
  stat(stats, "Rankings left", String(study.costs.rankings_left));
  stat(stats, "Estimate to finish", money(study.costs.to_finish));
  // What an adaptive quorum saved: rounds closed settled before their cap.
  stat(stats, "Rankings saved", `${study.costs.rankings_saved}${study.costs.saved ? ` (${money(study.costs.saved)})` : ""}`);
  // Idle: the workers' time on the study (join to last request) not on a ranked task.
  stat(stats, "Worker time on the study", duration(study.costs.worker_s));
  stat(stats, "Idle share", share(study.costs.idle_share));
  for (const button of document.querySelectorAll("[data-action]")) {
    const action = button.dataset.action;
    button.disabled = !(
      (action === "start" && ["draft", "paused"].includes(study.status)) ||
      (action === "pause" && study.status === "running") ||
      (action === "stop" && ["draft", "running", "paused"].includes(study.status))
    );
  }
  renderPrompts(study.campaigns);
  markRefreshed();
}

// The first page of workers (the oldest 100): who joined, how far they are, their code.
function renderWorkers(workers) {
  const table = $("#workers");
  const body = clear(table.querySelector("tbody"));
  table.hidden = workers.length === 0;
  $("#workers-empty").hidden = workers.length > 0;
  for (const worker of workers) {
    body.append(
      h(
        "tr",
        {},
        h("td", { text: worker.participant_id || worker.id }),
        h("td", { text: String(worker.tasks_done) }),
        h("td", { text: String(worker.attention_failed) }),
        h("td", { text: worker.completion_code || "—" }),
        h("td", { text: relativeTime(worker.last_seen) }),
      ),
    );
  }
}

async function load() {
  const [study, workers] = await Promise.all([ownerApi(path), ownerApi(`${path}/workers`)]);
  renderWorkers(workers.data?.workers || []);
  return study.data;
}

async function download() {
  const response = await fetch(`${apiRoot()}${path}/export`, {
    headers: { Authorization: `Bearer ${ownerKey()}` },
    credentials: "omit",
    cache: "no-store",
  });
  if (!response.ok) throw new Error(`The export failed (${response.status})`);
  const link = h("a", { href: URL.createObjectURL(await response.blob()), download: `rankloop-study-${studyId}.jsonl` });
  document.body.append(link);
  link.click();
  link.remove();
}

function setupControls() {
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", async () => {
      try {
        render((await ownerApi(`${path}/${button.dataset.action}`, { method: "POST" })).data);
      } catch (err) {
        showError(err);
      }
    });
  }
  $("#duplicate").addEventListener("click", async () => {
    try {
      const copy = (await ownerApi(`${path}/duplicate`, { method: "POST", body: {} })).data;
      window.location.href = `${pageRoot()}/dashboard/study/${encodeURIComponent(copy.id)}`;
    } catch (err) {
      showError(err);
    }
  });
  $("#export").addEventListener("click", () => download().catch(showError));
  $("#sort").addEventListener("change", () => current && renderPrompts(current.campaigns));
}

requireOwner(load, (study) => {
  render(study);
  setupControls();
  setInterval(() => load().then(render).catch(showError), 10000);
});
