// Drag with pointer events, so mouse, pen and touch share one path. A mouse drag starts after a
// few pixels of movement; a touch drag after a short press without movement (a moving finger
// scrolls the page as usual). A tap never starts a drag and stays a plain click.

const MOUSE_SLOP_PX = 5;
const TOUCH_SLOP_PX = 10;
const LONG_PRESS_MS = 250;

export function enableDrag(root, selector, { ghostFor, onMove, onDrop, onCancel }) {
  let pending = null; // {element, pointerId, x, y, timer}
  let active = null; // {element, pointerId, ghost}

  function start(event) {
    const { element, pointerId } = pending;
    clearTimeout(pending.timer);
    pending = null;
    const ghost = ghostFor(element);
    ghost.classList.add("drag-ghost");
    document.body.append(ghost);
    active = { element, pointerId, ghost };
    element.classList.add("dragging");
    document.body.classList.add("is-dragging");
    try {
      element.setPointerCapture(pointerId);
    } catch {
      // The pointer may already be gone; the drag still ends on pointerup.
    }
    move(event.clientX, event.clientY);
  }

  function move(x, y) {
    active.ghost.style.transform = `translate(${x}px, ${y}px) translate(-50%, -50%)`;
    onMove?.(active.element, x, y);
  }

  function finish(event, dropped) {
    const { element, ghost } = active;
    active = null;
    ghost.remove();
    element.classList.remove("dragging");
    document.body.classList.remove("is-dragging");
    // The click that follows a drag is not a tap.
    const swallow = (e) => {
      e.stopPropagation();
      e.preventDefault();
    };
    window.addEventListener("click", swallow, { capture: true, once: true });
    setTimeout(() => window.removeEventListener("click", swallow, { capture: true }), 0);
    if (dropped) onDrop(element, event.clientX, event.clientY);
    else onCancel?.(element);
  }

  root.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || active) return;
    const element = event.target.closest(selector);
    if (!element || !root.contains(element)) return;
    pending = { element, pointerId: event.pointerId, x: event.clientX, y: event.clientY, type: event.pointerType };
    if (event.pointerType === "touch") {
      const at = event;
      pending.timer = setTimeout(() => pending && start(at), LONG_PRESS_MS);
    }
  });

  window.addEventListener("pointermove", (event) => {
    if (active && event.pointerId === active.pointerId) {
      move(event.clientX, event.clientY);
      return;
    }
    if (!pending || event.pointerId !== pending.pointerId) return;
    const distance = Math.hypot(event.clientX - pending.x, event.clientY - pending.y);
    if (pending.type === "touch") {
      if (distance > TOUCH_SLOP_PX) {
        clearTimeout(pending.timer); // the finger moved first: a scroll, not a drag
        pending = null;
      }
    } else if (distance > MOUSE_SLOP_PX) start(event);
  });

  window.addEventListener("pointerup", (event) => {
    if (active && event.pointerId === active.pointerId) finish(event, true);
    else if (pending && event.pointerId === pending.pointerId) {
      clearTimeout(pending.timer);
      pending = null;
    }
  });

  window.addEventListener("pointercancel", (event) => {
    if (active && event.pointerId === active.pointerId) finish(event, false);
    if (pending && event.pointerId === pending.pointerId) {
      clearTimeout(pending.timer);
      pending = null;
    }
  });

  // Once a touch drag is under way the page must not scroll under the finger.
  root.addEventListener("touchmove", (event) => active && event.preventDefault(), { passive: false });
  document.addEventListener("touchmove", (event) => active && event.preventDefault(), { passive: false });
  // A long press would otherwise open the image's context menu.
  root.addEventListener("contextmenu", (event) => {
    if (event.target.closest(selector)) event.preventDefault();
  });
}
