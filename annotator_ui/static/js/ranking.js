// The ranking being built: an ordered list of groups of image ids, best first. A group holds
// more than one id only for a declared tie. Pure state, no DOM.

export class Ranking {
  constructor(ids, { k = null, allowTies = false } = {}) {
    this.ids = [...ids];
    this.allowTies = Boolean(allowTies);
    // k = null (or k >= n) ranks everything; the last image is then implied.
    this.k = k === null || k === undefined || k >= this.ids.length ? null : Math.max(1, k);
    this.groups = [];
    this.history = []; // ids in the order they were placed, for Undo
  }

  get count() {
    return this.groups.reduce((sum, group) => sum + group.length, 0);
  }

  // How many images can be placed at most.
  get limit() {
    return this.k ?? this.ids.length;
  }

  // How many must be placed before the ranking can be sent.
  get required() {
    return this.k ?? this.ids.length - 1;
  }

  get complete() {
    return this.count >= this.required;
  }

  // 1-based position of the image's group (tied images share it), or null.
  rankOf(id) {
    const index = this.groups.findIndex((group) => group.includes(id));
    return index < 0 ? null : index + 1;
  }

  isTied(id) {
    const group = this.groups.find((g) => g.includes(id));
    return Boolean(group && group.length > 1);
  }

  // Place an unranked image last (or tied with the last group). Returns a reason string when
  // it cannot be placed, null on success.
  pick(id, { tie = false } = {}) {
    if (!this.ids.includes(id)) return "unknown image";
    if (this.rankOf(id) !== null) return "already ranked";
    if (this.count >= this.limit) return "full";
    if (tie && this.allowTies && this.groups.length > 0) this.groups[this.groups.length - 1].push(id);
    else this.groups.push([id]);
    this.history.push(id);
    return null;
  }

  remove(id) {
    const index = this.groups.findIndex((group) => group.includes(id));
    if (index < 0) return false;
    const group = this.groups[index].filter((other) => other !== id);
    if (group.length) this.groups[index] = group;
    else this.groups.splice(index, 1);
    this.history = this.history.filter((other) => other !== id);
    return true;
  }

  toggle(id, options) {
    if (this.rankOf(id) !== null) {
      this.remove(id);
      return "removed";
    }
    const reason = this.pick(id, options);
    return reason ?? "picked";
  }

  undo() {
    const id = this.history[this.history.length - 1];
    if (id === undefined) return null;
    this.remove(id);
    return id;
  }

  clear() {
    this.groups = [];
    this.history = [];
  }

  // Put an image at group position `position` (0-based), as its own group; used by drag and
  // drop. In top-k mode a full ranking drops its last image to make room.
  moveTo(id, position) {
    if (!this.ids.includes(id)) return false;
    const wasRanked = this.remove(id);
    if (!wasRanked && this.count >= this.limit) {
      const lastGroup = this.groups[this.groups.length - 1];
      this.remove(lastGroup[lastGroup.length - 1]);
    }
    const at = Math.max(0, Math.min(position, this.groups.length));
    this.groups.splice(at, 0, [id]);
    this.history.push(id);
    return true;
  }

  // Plain data for the tab's storage (see lease.js), and back; ids the task does not show and
  // anything past the limit are left out, so a stale or edited copy cannot break the ranking.
  toJSON() {
    return { groups: this.groups.map((group) => [...group]), history: [...this.history] };
  }

  restore({ groups = [], history = [] } = {}) {
    this.clear();
    for (const group of Array.isArray(groups) ? groups : []) {
      const ids = (Array.isArray(group) ? group : []).filter(
        (id) => this.ids.includes(id) && this.rankOf(id) === null,
      );
      if (!ids.length || this.count + ids.length > this.limit) break;
      this.groups.push(this.allowTies ? ids : ids.slice(0, 1));
    }
    const placed = this.groups.flat();
    this.history = (Array.isArray(history) ? history : []).filter((id) => placed.includes(id));
    for (const id of placed) if (!this.history.includes(id)) this.history.push(id);
    return this;
  }

  // The order the API takes: best first, a tied group as a list. With k = null the one image
  // left unranked is, by elimination, the last.
  toOrder() {
    const order = this.groups.map((group) => (group.length === 1 ? group[0] : [...group]));
    if (this.k === null) {
      const rest = this.ids.filter((id) => this.rankOf(id) === null);
      if (rest.length === 1) order.push(rest[0]);
    }
    return order;
  }
}
