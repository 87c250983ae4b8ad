// The ranking tray under the grid: the slots as ranked so far, and where a dragged image lands.

import { $, clear, h, ordinal } from "./dom.js";

const tray = $("#tray");
const list = $("#ranking");

// The tray's height, for the CSS that keeps the page, focus and toasts clear of it (--tray-h):
// on a phone a long ranking wraps to a second row rather than scroll out of reach.
if (typeof ResizeObserver === "function") {
  new ResizeObserver(() => {
    document.documentElement.style.setProperty("--tray-h", `${tray.offsetHeight}px`);
  }).observe(tray);
}

// `name(id)` is an image's key ("3"), `thumb(id)` its thumbnail's URL.
export function renderTray(ranking, name, thumb) {
  clear(list);
  ranking.groups.forEach((group, position) => {
    const items = group.map((id) =>
      h(
        "span",
        { className: "rank-item", dataset: { dragId: id }, title: `Image ${name(id)}` },
        h("img", { src: thumb(id), alt: "", draggable: "false" }),
        h("span", { className: "rank-item-key", "aria-hidden": "true", text: name(id) }),
      ),
    );
    const names = group.map((id) => `image ${name(id)}`).join(" tied with ");
    list.append(
      h(
        "li",
        { className: `rank-slot filled${group.length > 1 ? " tie" : ""}`, dataset: { position }, "aria-label": `${ordinal(position + 1)}: ${names}` },
        h("span", { className: "rank-num", "aria-hidden": "true", text: position + 1 }),
        h("span", { className: "rank-items" }, items),
      ),
    );
  });
  // Empty slots show how many remain; with k = null the last one fills itself.
  const implied = ranking.k === null ? ranking.ids.filter((id) => ranking.rankOf(id) === null) : [];
  const empty = ranking.limit - ranking.count;
  for (let i = 0; i < empty; i += 1) {
    const position = ranking.groups.length + i;
    const isImplied = implied.length === 1 && i === empty - 1;
    list.append(
      h(
        "li",
        { className: `rank-slot empty${isImplied ? " implied" : ""}`, "aria-hidden": "true", dataset: { position } },
        h("span", { className: "rank-num", text: position + 1 }),
        isImplied
          ? h("span", { className: "rank-items" }, h("span", { className: "rank-item ghosted" }, h("img", { src: thumb(implied[0]), alt: "" })))
          : h("span", { className: "rank-items" }, h("span", { className: "rank-hole" })),
      ),
    );
  }
}

// The group position a drop at (x, y) puts an image at, or null outside the tray.
export function dropPosition(x, y, ranking) {
  const rect = tray.getBoundingClientRect();
  if (y < rect.top - 24 || y > rect.bottom || x < rect.left || x > rect.right) return null;
  const slots = [...list.querySelectorAll(".rank-slot")];
  if (!slots.length) return 0;
  let best = null;
  for (const slot of slots) {
    const r = slot.getBoundingClientRect();
    const cx = r.left + r.width / 2;
    const cy = r.top + r.height / 2;
    const distance = Math.hypot(x - cx, (y - cy) * 2); // rows weigh more: the tray may wrap
    if (!best || distance < best.distance) best = { slot, distance, before: x < cx };
  }
  const position = Number(best.slot.dataset.position);
  if (best.slot.classList.contains("empty")) return ranking.groups.length;
  return best.before ? position : position + 1;
}

export function markDrop(position) {
  clearDropMarks();
  if (position === null) return;
  tray.classList.add("drop-target");
  const slots = list.querySelectorAll(".rank-slot");
  if (position < slots.length) slots[position].classList.add("drop-before");
  else if (slots.length) slots[slots.length - 1].classList.add("drop-after");
}

export function clearDropMarks() {
  for (const node of list.querySelectorAll(".drop-before, .drop-after")) {
    node.classList.remove("drop-before", "drop-after");
  }
  tray.classList.remove("drop-target");
}
