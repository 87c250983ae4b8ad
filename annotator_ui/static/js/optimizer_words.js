// The optimizer's figures of a round (its stats: rankloop/core/optimizer/ranksgd.py) in words:
// what moved, by how much and why, and each figure under a name a reader knows.

const PICKED = {
  best: "the current best",
  step0: "the longer trial step",
  step1: "the shorter trial step",
  perturbation: "a nearby variation",
  none: "nothing",
};

// Each known figure's name; a figure not listed keeps its key.
export const FIGURE_NAMES = {
  step: "Next step length",
  radius: "Variation radius",
  metric_spread: "Learnt metric: spread of its scales",
  estimates_averaged: "Direction estimates averaged",
  x_norm: "Size of the delivered point",
  moved: "Delivered point moved",
  picked_step: "Step taken",
};
// Read by the sentence instead (or of no use to a reader).
const SAID = new Set(["round", "accepted", "picked", "kind"]);

const num = (value, digits = 3) => (Number.isFinite(value) ? value.toFixed(digits) : "—");

// Why the delivered image changed (or not) before this round was rendered, in a sentence.
export function whatMoved(round) {
  const s = round.stats || {};
  if (round.kind === "verdict") {
    return "A verdict round: the crowd compares the delivered image with the starting one; the optimizer does not move.";
  }
  if (!round.number) return "The first round: the starting image and variations around it; nothing has moved yet.";
  const picked = PICKED[s.picked] || s.picked || "nothing";
  const step = s.picked === "step0" ? "doubled" : s.picked === "none" || s.picked === "best" ? "halved" : "stayed";
  if (s.accepted) {
    return `The previous round's crowd ranked ${picked} above the current best, so the delivered image moved there (by ${num(s.moved)} in latent space); the step length ${step}, to ${num(s.step)}.`;
  }
  return `In the previous round the crowd ranked nothing above the current best, so the delivered image stayed; the step length ${step}, to ${num(s.step)}.`;
}

// The remaining figures as [name, value] pairs, for the detail's list.
export function figures(stats) {
  return Object.entries(stats || {})
    .filter(([key]) => !SAID.has(key))
    .map(([key, value]) => [FIGURE_NAMES[key] || key, typeof value === "number" ? num(value) : String(value)]);
}
