// The annotator's hands on the task page: keys (an image's key ranks it, Shift + key shows it
// full size, Backspace undoes, = ties, Enter sends) and drag and drop (mouse, pen, touch).

import { enableDrag } from "./drag.js";
import { h, ordinal } from "./dom.js";
import { announce, toast } from "./notices.js";
import { clearDropMarks, dropPosition, markDrop } from "./tray.js";
import { openViewer, stepViewer, viewerOpen } from "./viewer.js";

const KEYS = "1234567890abcdefghijklmnopqrstuvwxyz";

// The key (and the name on screen) of the image at `index` in display order.
export function label(index) {
  return KEYS[index] ?? String(index + 1);
}

function keyIndex(event, task) {
  // event.code survives Shift (Shift+1 is "!" in event.key).
  const match = /^(?:Digit|Numpad)(\d)$|^Key([A-Z])$/.exec(event.code);
  const char = match ? (match[1] ?? match[2].toLowerCase()) : event.key.toLowerCase();
  const index = KEYS.indexOf(char);
  return index >= 0 && task && index < task.images.length ? index : -1;
}

// Enter and Space on a focused control do what the control says (rank that image, undo, copy).
const CONTROL = "button, a[href], input, textarea, select, summary, [role=button], [contenteditable]";

// `page`: {state, choose(id, options), undo(), toggleTie(), submit(), render(), nameOf(id),
// thumbFor(id)}, the task page's state and actions.
export function enableInput(page) {
  document.addEventListener("keydown", (event) => {
    if (!page.state.task || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest?.("input, textarea, select")) return;
    if (viewerOpen()) {
      if (event.key === "ArrowLeft") stepViewer(-1);
      else if (event.key === "ArrowRight") stepViewer(1);
      else return;
      event.preventDefault();
      return;
    }
    const index = keyIndex(event, page.state.task);
    if (index >= 0) {
      event.preventDefault();
      if (event.shiftKey) openViewer(index);
      else page.choose(page.state.task.images[index].id, { viaKey: true });
    } else if (event.key === "Backspace") {
      event.preventDefault();
      page.undo();
    } else if (event.key === "Enter") {
      if (event.target.closest?.(CONTROL) || event.repeat) return;
      event.preventDefault();
      if (page.state.ranking.complete) page.submit();
      else {
        const more = page.state.ranking.required - page.state.ranking.count;
        const msg = `Rank ${more} more ${more === 1 ? "image" : "images"} before sending.`;
        toast(msg);
        announce(msg);
      }
    } else if (event.key === "=") {
      event.preventDefault();
      page.toggleTie();
    }
  });

  enableDrag(document.body, "[data-drag-id]", {
    ghostFor(element) {
      return h("div", {}, h("img", { src: page.thumbFor(element.dataset.dragId), alt: "" }));
    },
    onMove(element, x, y) {
      markDrop(page.state.ranking ? dropPosition(x, y, page.state.ranking) : null);
    },
    onTap(element) {
      // A long press let go without moving: on a tile, the same as a tap.
      if (element.classList.contains("tile-pick")) page.choose(element.dataset.dragId);
    },
    onDrop(element, x, y) {
      clearDropMarks();
      if (!page.state.task || page.state.sending) return;
      const id = element.dataset.dragId;
      let position = dropPosition(x, y, page.state.ranking);
      if (position === null) {
        // Dragged out of the tray: a ranked image is taken back.
        if (element.classList.contains("rank-item") && page.state.ranking.remove(id)) {
          announce(`Image ${page.nameOf(id)} taken back.`);
          page.render();
        }
        return;
      }
      const from = page.state.ranking.groups.findIndex((group) => group.includes(id));
      if (from >= 0 && page.state.ranking.groups[from].length === 1 && position > from) position -= 1;
      page.state.ranking.moveTo(id, position);
      page.state.tieMode = false;
      announce(`Image ${page.nameOf(id)} moved to ${ordinal(page.state.ranking.rankOf(id))}.`);
      page.render();
    },
    onCancel: clearDropMarks,
  });
}
