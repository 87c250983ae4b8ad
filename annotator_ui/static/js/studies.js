// The owner's studies and the form that makes one from a prompt list (pasted or uploaded).

import { ApiError, apiRoot } from "./api.js";
import { $, clear, h } from "./dom.js";
import { hideError, markRefreshed, ownerApi, ownerKey, requireOwner, showError, statusBadge } from "./owner.js";

const pageRoot = () => apiRoot().replace(/\/api$/, "");

function render(studies) {
  hideError();
  $("#studies-card").hidden = false;
  $("#create-card").hidden = false;
  const table = $("#studies");
  const body = clear(table.querySelector("tbody"));
  $("#studies-empty").hidden = studies.length > 0;
  table.hidden = studies.length === 0;
  for (const study of studies) {
    const href = `${pageRoot()}/dashboard/study/${encodeURIComponent(study.id)}`;
    const badge = h("span", {});
    statusBadge(badge, study.status);
    body.append(
      h(
        "tr",
        {},
        h("td", {}, h("a", { href, text: study.name || study.id })),
        h("td", {}, badge),
        h("td", { text: String(study.prompts) }),
        h("td", { text: String(study.rounds_closed) }),
        h("td", { text: String(study.rankings) }),
        h("td", { text: String(study.workers) }),
      ),
    );
  }
  markRefreshed();
}

async function load() {
  const { data } = await ownerApi("/studies");
  return data?.studies || [];
}

function numberOf(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

// The form as the API's body: the shared campaign settings apart from the study's own.
function studyBody() {
  const body = {
    name: $("#s-name").value.trim(),
    settings: {},
    recruit: $("#s-recruit").checked,
    start: $("#s-start").checked,
  };
  for (const name of ["m", "annotators_per_round", "rounds", "tasks_per_annotator"]) {
    const value = numberOf(`#s-${name}`);
    if (value !== undefined) body.settings[name] = value;
  }
  for (const name of ["recruit_cap", "tasks_per_worker", "pay_per_hour"]) {
    const value = numberOf(`#s-${name}`);
    if (value !== undefined) body[name] = value;
  }
  const url = $("#s-completion_url").value.trim();
  if (url) body.completion_url = url;
  return body;
}

// A file goes as multipart/form-data (the rest of the body as the JSON field "study").
async function create() {
  const body = studyBody();
  const file = $("#s-file").files[0];
  if (!file) {
    body.prompts = $("#s-prompts").value;
    return (await ownerApi("/studies", { method: "POST", body })).data;
  }
  const form = new FormData();
  form.append("file", file);
  form.append("study", JSON.stringify(body));
  const response = await fetch(`${apiRoot()}/studies`, {
    method: "POST",
    headers: { Accept: "application/json", Authorization: `Bearer ${ownerKey()}` },
    body: form,
    credentials: "omit",
    cache: "no-store",
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error || {};
    throw new ApiError(response.status, error.code, error.message || response.statusText, error.details);
  }
  return data;
}

function setupForm() {
  const form = $("#study-form");
  const error = $("#create-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      const study = await create();
      window.location.href = `${pageRoot()}/dashboard/study/${encodeURIComponent(study.id)}`;
    } catch (err) {
      // A bad row names its line: the owner fixes that line, not the whole list.
      const line = err?.details?.[0]?.line;
      error.textContent = line ? `Line ${line}: ${err.details[0].message}` : err.message;
      error.hidden = false;
    }
  });
}

requireOwner(load, (studies) => {
  render(studies);
  setupForm();
  $("#create").open = studies.length === 0;
  setInterval(() => load().then(render).catch(showError), 10000);
});
