// The full-size viewer: one image as large as the screen allows, arrows to step through them,
// and a button to rank it or take it back.

import { $, ordinal } from "./dom.js";

const viewer = $("#viewer");
const img = $("#viewer-img");
const caption = $("#viewer-caption");
const pick = $("#viewer-pick");
let index = 0;
let page = null; // {task(), ranking(), choose(id), name(index), alt(index)}

export function initViewer(hooks) {
  page = hooks;
  $("#viewer-prev").addEventListener("click", () => stepViewer(-1));
  $("#viewer-next").addEventListener("click", () => stepViewer(1));
  $("#viewer-close").addEventListener("click", () => viewer.close());
  pick.addEventListener("click", () => {
    page.choose(page.task().images[index].id);
    fill();
  });
  viewer.addEventListener("click", (event) => {
    if (event.target === viewer) viewer.close(); // a click on the backdrop
  });
}

export const viewerOpen = () => viewer.open;

export function openViewer(at) {
  index = at;
  fill();
  if (!viewer.open) viewer.showModal();
}

export function closeViewer() {
  if (viewer.open) viewer.close();
}

export function stepViewer(delta) {
  const n = page.task().images.length;
  index = (index + delta + n) % n;
  fill();
}

function fill() {
  const task = page.task();
  const image = task.images[index];
  const rank = page.ranking().rankOf(image.id);
  img.src = image.url;
  img.alt = page.alt(index);
  caption.textContent =
    `Image ${page.name(index)} of ${task.images.length}` + (rank === null ? "" : ` · ranked ${ordinal(rank)}`);
  pick.textContent = rank === null ? "Rank next" : "Take back";
}
