// The crowd's verdict at the head of the campaign page: the share of answers preferring the
// delivered image to the starting one, its 95 % interval drawn as a bar, the counts, and the
// owner's button to ask for (another) verdict once the campaign has ended.

import { $, clear, h } from "./dom.js";
import { ownerApi, showError } from "./owner.js";

const pct = (value) => `${Math.round(100 * value)}%`;

export function intervalBar(verdict) {
  // 0..100 % with the interval shaded, the share marked and 50 % (no preference) ruled.
  const bar = h("div", {
    className: "verdict-bar",
    role: "img",
    "aria-label": `${pct(verdict.share)} prefer the delivered image, 95% interval ${pct(verdict.low)} to ${pct(verdict.high)}`,
  });
  const span = h("span", { className: "verdict-interval" });
  span.style.left = pct(verdict.low);
  span.style.width = `${(100 * (verdict.high - verdict.low)).toFixed(1)}%`;
  const mark = h("span", { className: "verdict-share" });
  mark.style.left = pct(verdict.share);
  bar.append(h("span", { className: "verdict-even" }), span, mark);
  return bar;
}

export function renderVerdict(campaign, { base, refresh }) {
  const verdict = campaign.verdict;
  const card = $("#verdict-card");
  if (!verdict) {
    card.hidden = true;
    return;
  }
  card.hidden = false;
  $("#verdict-summary").textContent = verdict.summary;
  const figure = clear($("#verdict-figure"));
  const stats = clear($("#verdict-stats"));
  if (verdict.share !== null && verdict.share !== undefined) {
    figure.append(intervalBar(verdict));
    const stat = (label, value) =>
      stats.append(h("div", {}, h("dt", { text: label }), h("dd", { text: String(value) })));
    stat("Prefer delivered", verdict.prefer_delivered);
    stat("Prefer start", verdict.prefer_start);
    stat("Ties", verdict.ties);
    stat("From annotators who did not steer", verdict.from_non_steering);
  }
  const ask = $("#verdict-ask");
  const ended = campaign.status === "finished" || campaign.status === "stopped";
  ask.disabled = !ended || verdict.open;
  $("#verdict-hint").textContent = verdict.open
    ? "A verdict round is collecting answers now."
    : ended
      ? "Ask the crowd again: a verdict round opens, and its answers add to these."
      : "The campaign's last round asks the crowd (setting verdict), or ask once it has ended.";
  ask.onclick = async () => {
    try {
      await ownerApi(`${base}/verdict`, { method: "POST" });
      await refresh();
    } catch (err) {
      showError(err);
    }
  };
}
