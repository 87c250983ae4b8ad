// The "New campaign" form on the dashboard. The limits, defaults and choices of its fields come
// from the API's own document (/api/openapi.json, the CampaignCreate schema), so the form offers
// what the API takes; the API validates, and its 422 messages are shown next to their fields.
// "Preview the starting image" has the render workers render it (POST /api/previews), and its
// render time feeds the estimate until a campaign's own history does.

import { ApiError, api } from "./api.js";
import { $, clear, h } from "./dom.js";
import { ownerApi } from "./owner.js";

const form = () => $("#create-form");

function fieldsOf(element) {
  return [...element.querySelectorAll("input[name], select[name], textarea[name]")];
}

// A nullable property is anyOf [the type, null]: its constraints are on the first branch.
function branch(property) {
  return (property.anyOf || []).find((p) => p.type !== "null") || property;
}

async function schema() {
  const { data } = await api("/openapi.json");
  return data?.components?.schemas?.CampaignCreate?.properties || {};
}

function applySchema(properties) {
  for (const input of fieldsOf(form())) {
    const property = properties[input.name];
    if (!property) continue;
    const shape = branch(property);
    if (input.tagName === "SELECT") {
      clear(input).append(...(shape.enum || []).map((value) => h("option", { value, text: value })));
    }
    if (input.type === "number") {
      const low = shape.minimum ?? shape.ge ?? shape.exclusiveMinimum;
      const high = shape.maximum ?? shape.le;
      if (low !== undefined) input.min = low;
      if (high !== undefined) input.max = high;
      input.step = shape.type === "integer" ? shape.multiple_of || 1 : "any";
    }
  }
  fill(Object.fromEntries(Object.entries(properties).map(([name, p]) => [name, p.default])));
}

// Put ``values`` (a campaign's settings, or the schema's defaults) into the form's fields.
function fill(values) {
  for (const input of fieldsOf(form())) {
    if (!(input.name in values)) continue;
    const value = values[input.name];
    if (input.type === "checkbox") input.checked = Boolean(value);
    else if (input.name === "optimizer") input.value = JSON.stringify(value ?? {});
    else input.value = value === null || value === undefined ? "" : String(value);
  }
}

// The request body: an empty optional field is left out, and the API's default applies.
function body() {
  const out = {};
  for (const input of fieldsOf(form())) {
    const raw = input.value.trim();
    if (input.type === "checkbox") out[input.name] = input.checked;
    else if (input.name === "prompt" || input.name === "name") out[input.name] = input.value;
    else if (raw === "") continue;
    else if (input.type === "number") out[input.name] = Number(raw);
    else if (input.name === "optimizer") {
      try {
        out.optimizer = JSON.parse(raw);
      } catch {
        throw new ApiError(422, "validation_error", "optimizer: not valid JSON", [
          { field: "optimizer", message: "not valid JSON: write an object such as {\"step\": 0.5}" },
        ]);
      }
    } else out[input.name] = input.value;
  }
  return out;
}

function clearErrors() {
  for (const node of form().querySelectorAll(".field-error")) {
    node.hidden = true;
    node.textContent = "";
  }
  for (const input of fieldsOf(form())) input.removeAttribute("aria-invalid");
  $("#create-error").hidden = true;
}

// Each problem next to its field ("optimizer.step" goes to the optimizer box); the rest (rules
// that tie fields together, such as k at most m) above the button.
function showErrors(err) {
  const general = [];
  for (const { field, message } of err.details || []) {
    const [name, ...rest] = String(field || "").split(".");
    const slot = name && document.getElementById(`e-${name}`);
    if (!slot) {
      general.push(field ? `${field}: ${message}` : message);
      continue;
    }
    slot.textContent = [slot.textContent, rest.length ? `${rest.join(".")}: ${message}` : message]
      .filter(Boolean)
      .join("; ");
    slot.hidden = false;
    document.getElementById(`f-${name}`)?.setAttribute("aria-invalid", "true");
  }
  const box = $("#create-error");
  box.textContent = err.details?.length
    ? ["The API did not accept these settings.", ...general].join(" ")
    : err.message;
  box.hidden = false;
  form().querySelector("[aria-invalid=true]")?.focus();
}

// ---------------------------------------------------------------- the estimate

// From a campaign's history: how long an open round took per ranking it got, and how long a
// round took to render. Null until the campaign has such rounds.
export function measured(history) {
  let openMs = 0;
  let rankings = 0;
  const renders = [];
  for (const round of history || []) {
    const opened = Date.parse(round.opened_at || "");
    const closed = Date.parse(round.closed_at || "");
    if (Number.isFinite(opened) && Number.isFinite(closed) && round.n_rankings > 0) {
      openMs += closed - opened;
      rankings += round.n_rankings;
    }
    if (Number.isFinite(round.render_seconds)) renders.push(round.render_seconds);
  }
  return {
    minutesPerRanking: rankings ? openMs / rankings / 60000 : null,
    renderSeconds: renders.length ? renders.reduce((a, b) => a + b, 0) / renders.length : null,
  };
}

function fmtDuration(seconds) {
  if (!Number.isFinite(seconds)) return "—";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

let basis = { minutesPerRanking: null, renderSeconds: null, from: null };
// Annotator seconds per ranking for the form's shape and the pay per hour (GET /api/estimate:
// measured on this deployment, else the stated default).
let cost = null;
let costAsked = 0;

async function refreshCost() {
  const f = form().elements;
  const query = new URLSearchParams();
  for (const name of ["m", "k", "width", "height"]) if (f[name]?.value.trim()) query.set(name, f[name].value.trim());
  query.set("attention_check", f.attention_check?.checked ? "true" : "false");
  const asked = ++costAsked;
  try {
    const { data } = await ownerApi(`/estimate?${query}`);
    if (asked !== costAsked) return;
    cost = data;
    const pay = $("#pay-per-hour");
    if (pay && pay.value === "") pay.value = String(data.pay_per_hour);
  } catch {
    cost = null; // an out-of-range field: its own error says so on submit
  }
  renderEstimate();
}

function renderEstimate() {
  const rounds = Number(form().elements.rounds.value);
  const quorum = Number(form().elements.annotators_per_round.value);
  const list = clear($("#estimate"));
  const stat = (label, value) => list.append(h("div", {}, h("dt", { text: label }), h("dd", { text: value })));
  const needed = rounds > 0 && quorum > 0 ? rounds * quorum : null;
  stat("Rankings needed", needed ?? "—");
  const { minutesPerRanking: perRanking } = basis;
  const render = Number.isFinite(basis.renderSeconds) ? basis.renderSeconds : previewRender();
  stat("Minutes per ranking", Number.isFinite(perRanking) ? perRanking.toFixed(1) : "—");
  stat("Render per round", fmtDuration(render));
  const known = needed && Number.isFinite(perRanking) && Number.isFinite(render);
  stat("Time, about", known ? fmtDuration(rounds * render + needed * perRanking * 60) : "—");
  const work = cost && needed ? needed * cost.seconds_per_ranking : null;
  stat("Annotator time per ranking", cost ? fmtDuration(cost.seconds_per_ranking) : "—");
  stat("Annotator time in all", Number.isFinite(work) ? fmtDuration(work) : "—");
  const pay = Number($("#pay-per-hour")?.value);
  stat("Cost, about", Number.isFinite(work) && pay >= 0 ? (work / 3600 * pay).toFixed(2) : "—");
  $("#cost-hint").textContent = !cost
    ? ""
    : cost.measured
      ? `Annotator time per ranking measured on this server (${cost.n_measured} recent rankings), for tasks of this shape; cost = rankings × that time × pay per hour.`
      : `Annotator time per ranking: the stated default for tasks of this shape (${Math.round(cost.default_seconds_per_ranking)} s: read the prompt, look at every image, pick) until this server has measured its own; cost = rankings × that time × pay per hour.`;
  $("#estimate-hint").textContent = basis.from
    ? `Minutes per ranking and render time measured on “${basis.from}”.`
    : "Rankings needed = rounds × annotators per round. Minutes per ranking and render time " +
      "come from a campaign's history: duplicate a campaign that has run to see them (or preview " +
      "the starting image for the render time)." +
      (Number.isFinite(render) ? " Render time from the preview, scaled to this round's images." : "");
}

// ---------------------------------------------------------------- the preview

const PREVIEW_POLL_MS = 1500;
const PREVIEW_TRIES = 200; // about five minutes: a cold worker loads its model first
let previewRun = 0;
let previewed = null; // { seconds, images }: the preview's render time and how many it rendered

// A round renders m candidates, the attention image and the clean best image; the preview
// rendered the fewest candidates (the form's minimum m) and the best image.
function previewRender() {
  if (!previewed) return null;
  const m = Number(form().elements.m.value) || Number(form().elements.m.min) || 1;
  const attention = form().elements.attention_check?.checked ? 1 : 0;
  return (previewed.seconds / previewed.images) * (m + attention + 1);
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function preview() {
  clearErrors();
  const run = ++previewRun;
  const status = $("#preview-status");
  const figure = $("#preview-figure");
  let asked;
  try {
    asked = (await ownerApi("/previews", { method: "POST", body: body() })).data;
  } catch (err) {
    if (err instanceof ApiError && err.status === 422) showErrors(err);
    else status.textContent = err.message || String(err);
    return;
  }
  figure.hidden = true;
  status.textContent = "Rendering the starting image…";
  for (let tries = 0; tries < PREVIEW_TRIES; tries += 1) {
    await pause(PREVIEW_POLL_MS);
    if (run !== previewRun) return; // a newer preview was asked for
    let shown;
    try {
      shown = (await ownerApi(`/previews/${encodeURIComponent(asked.id)}`)).data;
    } catch (err) {
      status.textContent = `${err.message || err} Still trying…`;
      continue;
    }
    if (shown.status === "failed") {
      status.textContent = `The render failed: ${shown.error || "no reason given"}`;
      return;
    }
    if (shown.status === "ready") {
      $("#preview-image").src = shown.image_url;
      $("#preview-link").href = shown.image_url;
      figure.hidden = false;
      const seconds = shown.render_seconds;
      const minimum = Number(form().elements.m.min) || 2;
      previewed = Number.isFinite(seconds) ? { seconds, images: minimum + 1 } : null;
      status.textContent = Number.isFinite(seconds)
        ? `Rendered in ${seconds.toFixed(1)} s with these settings.`
        : "Rendered with these settings.";
      renderEstimate();
      return;
    }
  }
  if (run === previewRun) status.textContent = "No render worker has answered yet: is one running? Try again later.";
}

// ---------------------------------------------------------------- setup

// Copy a campaign's settings into the form (the "Duplicate" link: /dashboard?duplicate=<id>).
async function duplicate(campaignId) {
  const { data } = await ownerApi(`/campaigns/${encodeURIComponent(campaignId)}`);
  const label = data.name || data.id;
  fill({ ...data.settings, prompt: data.prompt, name: `${label} (copy)`, start: false });
  basis = { ...measured(data.history), from: label };
  const source = $("#create-source");
  source.textContent = `Settings copied from “${label}”.`;
  source.hidden = false;
  $("#create").open = true;
}

export async function setupCreateForm({ open = false } = {}) {
  $("#create-card").hidden = false;
  applySchema(await schema());
  const wanted = new URLSearchParams(window.location.search).get("duplicate");
  if (wanted) await duplicate(wanted);
  if (open) $("#create").open = true;
  renderEstimate();
  refreshCost();
  form().addEventListener("input", renderEstimate);
  form().addEventListener("change", refreshCost);
  $("#preview").addEventListener("click", preview);
  form().addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const button = form().querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data } = await ownerApi("/campaigns", { method: "POST", body: body() });
      const root = document.body.dataset.apiRoot.replace(/\/api$/, "");
      window.location.assign(`${root}/dashboard/${encodeURIComponent(data.id)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) showErrors(err);
      else {
        $("#create-error").textContent = err.message || String(err);
        $("#create-error").hidden = false;
      }
    } finally {
      button.disabled = false;
    }
  });
}
