// Drag with pointer events, so mouse, pen and touch share one path. A mouse drag starts after a
// few pixels of movement; a touch drag after a short press without movement (a moving finger
// scrolls the page as usual). A tap never starts a drag and stays a plain click. A long press
// only lifts the image: it becomes a drag once the finger moves, and letting go where it was
// pressed is a tap however long it was held (a slow tap must never be lost).

const MOUSE_SLOP_PX = 5;
const TOUCH_SLOP_PX = 10;
const LONG_PRESS_MS = 250;

export function enableDrag(root, selector, { ghostFor, onMove, onDrop, onCancel, onTap }) {
  let pending = null; // {element, pointerId, x, y, type, timer, held}
  let active = null; // {element, pointerId, ghost}

  // The click (if any) that follows a drag or a long press is not a tap of its own.
  function swallowNextClick() {
    const swallow = (e) => {
      e.stopPropagation();
      e.preventDefault();
    };
    window.addEventListener("click", swallow, { capture: true, once: true });
    setTimeout(() => window.removeEventListener("click", swallow, { capture: true }), 0);
  }

  function start(event) {
    const { element, pointerId } = pending;
    clearTimeout(pending.timer);
    element.classList.remove("held");
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
    swallowNextClick();
    if (dropped) onDrop(element, event.clientX, event.clientY);
    else onCancel?.(element);
  }

  root.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || active) return;
    const element = event.target.closest(selector);
    if (!element || !root.contains(element)) return;
    pending = { element, pointerId: event.pointerId, x: event.clientX, y: event.clientY, type: event.pointerType };
    if (event.pointerType === "touch") {
      // Held still: lift the image (a drag from here needs no more waiting), not a drag yet.
      pending.timer = setTimeout(() => {
        if (!pending) return;
        pending.held = true;
        pending.element.classList.add("held");
      }, LONG_PRESS_MS);
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
      if (distance <= TOUCH_SLOP_PX) return;
      if (pending.held) start(event);
      else drop(); // the finger moved first: a scroll, not a drag
    } else if (distance > MOUSE_SLOP_PX) start(event);
  });

  function drop() {
    clearTimeout(pending.timer);
    pending.element.classList.remove("held");
    pending = null;
  }

  window.addEventListener("pointerup", (event) => {
    if (active && event.pointerId === active.pointerId) finish(event, true);
    else if (pending && event.pointerId === pending.pointerId) {
      const { element, held } = pending;
      drop();
      // A long press that never moved is a tap: the browser may send no click after it.
      if (held) {
        swallowNextClick();
        onTap?.(element);
      }
    }
  });

  window.addEventListener("pointercancel", (event) => {
    if (active && event.pointerId === active.pointerId) finish(event, false);
    if (pending && event.pointerId === pending.pointerId) drop();
  });

  // Once a touch drag is under way (or an image is lifted) the page must not scroll under the
  // finger.
  const holding = (event) => (active || pending?.held) && event.preventDefault();
  document.addEventListener("touchmove", holding, { passive: false });
  // A long press would otherwise open the image's context menu.
  root.addEventListener("contextmenu", (event) => {
    if (event.target.closest(selector)) event.preventDefault();
  });
}
