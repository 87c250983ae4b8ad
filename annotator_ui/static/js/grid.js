// The images to rank: loading them, the tiles, and a grid sized to the screen.

import { $, clear, h, ordinal } from "./dom.js";
import { label } from "./input.js";
import { openViewer } from "./viewer.js";

const PRELOAD_TIMEOUT_MS = 15000;
const grid = $("#grid");
const tray = $("#tray");

// Start loading `urls`; resolves with the first image that arrives (for the grid's aspect
// ratio), or null when none does in time. The tiles then show each image as it arrives.
export function firstLoaded(urls) {
  return new Promise((resolve) => {
    let left = urls.length;
    const timer = setTimeout(() => resolve(null), PRELOAD_TIMEOUT_MS);
    const done = (img) => {
      left -= 1;
      if (img || left === 0) {
        clearTimeout(timer);
        resolve(img);
      }
    };
    if (!left) done(null);
    for (const url of urls) {
      const img = new Image();
      img.onload = () => done(img);
      img.onerror = () => done(null);
      img.src = url;
    }
  });
}

export function altText(image, index) {
  return image.alt || `Image ${label(index)}`;
}

// A tile first shows its thumbnail (a small WebP, loaded before the task was shown), then its
// full-size image as soon as that arrives: on a slow connection the worker can start at once.
function sharpen(img, url) {
  const full = new Image();
  full.decoding = "async";
  full.onload = () => {
    if (!img.isConnected) return;
    img.src = url;
    img.dataset.sharp = "true";
  };
  full.src = url;
}

function tile(image, index, onPick) {
  const key = label(index);
  const img = h("img", { src: image.thumb_url || image.url, alt: altText(image, index), draggable: "false", decoding: "async" });
  if (image.thumb_url && image.thumb_url !== image.url) sharpen(img, image.url);
  else img.dataset.sharp = "true";
  return h(
    "div",
    { className: "tile", role: "listitem", dataset: { id: image.id } },
    h(
      "button",
      { type: "button", className: "tile-pick", dataset: { dragId: image.id }, onclick: () => onPick(image.id) },
      img,
      h("span", { className: "tile-key", "aria-hidden": "true", text: key }),
      h("span", { className: "tile-rank", "aria-hidden": "true" }),
    ),
    h("button", {
      type: "button",
      className: "tile-zoom",
      "aria-label": `View image ${key} full size`,
      title: "Full size (Shift + key)",
      text: "⤢",
      onclick: () => openViewer(index),
    }),
  );
}

// The task's images as tiles; `onPick(id)` runs on a tap or click.
export function showTiles(task, aspect, onPick) {
  clear(grid);
  task.images.forEach((image, index) => grid.append(tile(image, index, onPick)));
  grid.style.setProperty("--aspect", String(aspect || 1));
  layoutGrid(task.images.length, aspect || 1);
}

// Each tile as ranked: its ring, its number, and a short name for screen readers.
export function markTiles(ranking, nameOf) {
  for (const node of grid.querySelectorAll(".tile")) {
    const id = node.dataset.id;
    const rank = ranking.rankOf(id);
    const tied = ranking.isTied(id);
    node.classList.toggle("ranked", rank !== null);
    node.classList.toggle("tied", tied);
    node.querySelector(".tile-rank").textContent = rank === null ? "" : String(rank);
    const button = node.querySelector(".tile-pick");
    button.setAttribute("aria-pressed", rank === null ? "false" : "true");
    // Short, so a screen reader says what matters first: "Image 3, ranked 2nd".
    const where = rank === null ? "not ranked" : `${tied ? "tied" : "ranked"} ${ordinal(rank)}`;
    button.setAttribute("aria-label", `Image ${nameOf(id)}, ${where}`);
  }
}

// Grid sized to the screen: as many columns as make the images largest while all of them fit
// above the tray; on a narrow screen two columns and the page scrolls.
export function layoutGrid(n, aspect) {
  if (!n) return;
  const gap = parseFloat(getComputedStyle(grid).columnGap) || 12;
  const width = grid.clientWidth;
  const top = grid.getBoundingClientRect().top + window.scrollY;
  const height = Math.max(200, window.innerHeight - top - (tray.offsetHeight || 0) - 16);
  let best = { cols: 1, tile: 0 };
  for (let cols = 1; cols <= n; cols += 1) {
    const rows = Math.ceil(n / cols);
    const tile = Math.min((width - gap * (cols - 1)) / cols, ((height - gap * (rows - 1)) / rows) * aspect);
    if (tile > best.tile) best = { cols, tile };
  }
  // Too small to judge details when everything must fit: let the page scroll instead, with
  // columns of at least MIN_TILE_PX (two on a phone).
  const MIN_TILE_PX = 160;
  if (best.tile < MIN_TILE_PX || width < 600) {
    const fit = Math.floor((width + gap) / (MIN_TILE_PX + gap));
    const cols = Math.max(1, Math.min(n, fit, width < 600 ? 2 : fit));
    best = { cols, tile: (width - gap * (cols - 1)) / cols };
  }
  grid.style.setProperty("--cols", String(best.cols));
  grid.style.setProperty("--tile-w", `${Math.floor(best.tile)}px`);
}

