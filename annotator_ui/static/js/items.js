// An image set's items on its campaign page: upload a file of items (a zip, CSV, JSON lines or
// Parquet, as POST /items takes it), check it first (?dry_run=true: every item read and decoded,
// nothing kept, the first items shown with their images), then import it, all or nothing or
// with the malformed rows skipped (?on_error=skip) and listed. The first items imported are
// shown from GET /items. Errors are the API's own words, with the line they name.

import { ApiError, apiRoot } from "./api.js";
import { $, clear, h } from "./dom.js";
import { ownerApi, ownerKey } from "./owner.js";

const PREVIEW = 4; // items shown, as the API's dry run shows them
// What the API reads a file as, by its Content-Type (rankloop.core.image_sets.UPLOAD_TYPES).
const TYPES = {
  ".zip": "application/zip",
  ".csv": "text/csv",
  ".jsonl": "application/x-ndjson",
  ".ndjson": "application/x-ndjson",
  ".parquet": "application/vnd.apache.parquet",
};

let shown = false; // whether the imported items are on the page already

function typeOf(file) {
  const name = file.name.toLowerCase();
  const suffix = Object.keys(TYPES).find((s) => name.endsWith(s));
  return suffix ? TYPES[suffix] : null;
}

// The file sent as the request's body (not a form: the API streams it to disk as it comes).
async function upload(base, file, query) {
  const response = await fetch(`${apiRoot()}${base}/items?${query}`, {
    method: "POST",
    headers: { Accept: "application/json", Authorization: `Bearer ${ownerKey()}`, "Content-Type": typeOf(file) },
    body: file,
    credentials: "omit",
    cache: "no-store",
  }).catch(() => {
    throw new ApiError(0, "network", "The server could not be reached. Check your connection.");
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data?.error || {};
    throw new ApiError(response.status, error.code, error.message || response.statusText, error.details ?? null);
  }
  return data;
}

function figure(src, full, model, label) {
  const img = h("img", { src, alt: label });
  return h(
    "figure",
    {},
    full ? h("a", { href: full, target: "_blank", rel: "noopener noreferrer" }, img) : img,
    h("figcaption", { text: model || "—" }),
  );
}

// Items as a list: the prompt, where it came from, its images with their models.
function renderItems(list, items, { checked }) {
  clear(list);
  for (const item of items) {
    const candidates = (item.images || []).filter((image) => (image.role || "candidate") === "candidate");
    const where = checked ? `line ${item.line} · ${item.item_id}` : `item ${item.number + 1} · ${item.item_id || "—"} · ${item.status}`;
    list.append(
      h(
        "li",
        { className: "item-preview" },
        h("p", { className: "prompt", text: item.prompt }),
        h("p", { className: "hint", text: `${where} · ${candidates.length} images` }),
        h(
          "div",
          { className: "item-images" },
          ...candidates.map((image, i) =>
            figure(image.src || image.thumb_url, image.url, image.model, `${item.prompt}: image ${i + 1}${image.model ? ` (${image.model})` : ""}`),
          ),
        ),
      ),
    );
  }
}

function renderSkipped(skipped, rows) {
  const box = $("#items-skipped");
  box.hidden = !skipped;
  if (!skipped) return;
  const more = skipped > rows.length ? ` (the first ${rows.length} listed)` : "";
  $("#items-skipped-count").textContent = `${skipped} malformed ${skipped === 1 ? "row" : "rows"} left out${more}.`;
  const body = clear($("#items-skipped tbody"));
  for (const row of rows) {
    body.append(h("tr", {}, h("td", { className: "num", text: row.line }), h("td", { text: row.item_id }), h("td", { text: row.reason })));
  }
}

function say(text) {
  $("#items-status").textContent = text;
}

function showProblem(err) {
  const box = $("#items-error");
  const lines = (err.details || []).filter((d) => d && d.message).slice(0, 20);
  box.textContent = lines.length
    ? `${err.message} — ${lines.map((d) => (d.line ? `line ${d.line}: ${d.message}` : d.message)).join("; ")}`
    : err.message || String(err);
  box.hidden = false;
  say("");
}

async function send(base, { dryRun, refresh }) {
  const file = $("#items-file").files[0];
  $("#items-error").hidden = true;
  if (!file) return showProblem(new Error("Choose a file of items first."));
  if (!typeOf(file)) return showProblem(new Error(`${file.name}: send a .zip, .csv, .jsonl or .parquet file.`));
  const onError = $("#items-skip").checked ? "skip" : "abort";
  const buttons = document.querySelectorAll("#items-form button");
  for (const button of buttons) button.disabled = true;
  say(dryRun ? `Checking ${file.name}…` : `Importing ${file.name}…`);
  try {
    const report = await upload(base, file, `on_error=${onError}&dry_run=${dryRun}`);
    renderSkipped(report.skipped, report.skipped_rows || []);
    const counts = `${report.items} items, ${report.images} images`;
    if (dryRun) {
      say(`${file.name} is fine: ${counts} would be imported. Nothing was kept yet.`);
      $("#items-preview-title").textContent = "First items in the file";
      renderItems($("#items-preview"), report.preview || [], { checked: true });
    } else {
      say(`Imported ${counts} (${report.rounds} items in the campaign).`);
      $("#items-file").value = "";
      await showImported(base);
      await refresh();
    }
  } catch (err) {
    // A row's problem (the API names its line): the owner may skip such rows instead.
    const oneRow = onError === "abort" && err.status === 400 && /^line \d+/.test(err.message || "");
    if (oneRow) err.message = `${err.message}. Fix that row, or tick “Skip malformed rows” to import the others.`;
    showProblem(err);
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

async function showImported(base) {
  shown = true;
  const { data } = await ownerApi(`${base}/items?limit=${PREVIEW}`);
  const items = data?.items || [];
  $("#items-preview-title").textContent = items.length ? "First items imported" : "No item imported yet";
  renderItems($("#items-preview"), items, { checked: false });
}

// Called on every render of the campaign page: the card only for an image set, the form only
// while it is a draft (items go into a draft).
export function renderItemsCard(campaign, base) {
  const card = $("#items-card");
  const imageSet = campaign.settings?.kind === "image_set";
  card.hidden = !imageSet;
  if (!imageSet) return;
  $("#items-form").hidden = campaign.status !== "draft";
  if (!shown) showImported(base).catch(showProblem);
}

export function setupItems(base, refresh) {
  const form = $("#items-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(base, { dryRun: false, refresh });
  });
  $("#items-check").addEventListener("click", () => send(base, { dryRun: true, refresh }));
}
