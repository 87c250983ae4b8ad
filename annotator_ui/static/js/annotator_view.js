// One annotator on the campaign page: progress against the quota, the completion code issued,
// access, their reliability weight over the rounds, and every ranking with its time on task.
// Data: GET /api/campaigns/<id>/annotators/<annotator_id>.

import { $, clear, h } from "./dom.js";
import { ownerApi, showError } from "./owner.js";
import { lineChart } from "./plot.js";

function seconds(value) {
  return value < 120 ? `${value.toFixed(1)} s` : `${(value / 60).toFixed(1)} min`;
}

function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function render(a) {
  const name = a.participant_id || a.id;
  $("#annotator-title").textContent = `Annotator ${name}`;
  const stats = clear($("#annotator-stats"));
  const stat = (label, value) => stats.append(h("div", {}, h("dt", { text: label }), h("dd", { text: value })));
  stat("Tasks done", `${a.tasks_done} / ${a.tasks_quota}`);
  const typical = median(a.rankings.map((r) => r.seconds));
  stat("Time per task (median)", typical === null ? "—" : seconds(typical));
  stat("Attention checks failed", a.rankings.filter((r) => r.attention_passed === false).length);
  stat("Completion code", a.completion_code || "not issued yet");
  const access = a.revoked_at ? (a.excluded ? "revoked, excluded" : "revoked") : a.pool ? "pool" : "active";
  stat("Access", access);
  if (a.study_id) stat("Joined through", "the campaign's study (its quota and code are the study's)");
  // The same number as the annotator table's (the campaign's pooled evidence about them).
  stat("Reliability weight", Number.isFinite(a.weight) ? a.weight.toFixed(2) : "—");

  const points = a.rankings.map((r) => ({ x: r.round, y: r.weight }));
  clear($("#annotator-plot")).append(
    lineChart({ id: "plot-annotator-weight", title: "Weight in each round's consensus", points }),
  );
  const body = clear($("#annotator-rankings tbody"));
  for (const r of a.rankings) {
    const passed = r.attention_passed;
    body.append(
      h(
        "tr",
        { dataset: { round: r.round } },
        h("td", { className: "num", text: r.round }),
        h("td", { text: new Date(r.created_at).toLocaleTimeString() }),
        h("td", { className: "num", text: seconds(r.seconds) }),
        h("td", { text: passed === null ? "—" : passed ? "passed" : "failed" }),
        h("td", { text: r.late ? "late" : "" }),
        h("td", { className: "num", text: Number.isFinite(r.weight) ? r.weight.toFixed(2) : "—" }),
      ),
    );
  }
  $("#annotator-rankings").hidden = a.rankings.length === 0;
  $("#annotator-empty").hidden = a.rankings.length > 0;
  $("#annotator-card").hidden = false;
}

export async function showAnnotator(base, annotatorId) {
  try {
    const { data } = await ownerApi(`${base}/annotators/${encodeURIComponent(annotatorId)}`);
    render(data);
    $("#annotator-card").scrollIntoView({ block: "start" });
    $("#annotator-title").focus();
  } catch (err) {
    showError(err);
  }
}
