// The owner's campaign list and the form that creates a campaign (campaign_form.js).

import { setupCreateForm } from "./campaign_form.js";
import { $, clear, h } from "./dom.js";
import { hideError, markRefreshed, ownerApi, requireOwner, showError, statusBadge } from "./owner.js";

function campaignsOf(data) {
  return Array.isArray(data) ? data : data?.campaigns || [];
}

function render(campaigns) {
  hideError();
  $("#campaigns-card").hidden = false;
  const table = $("#campaigns");
  const body = clear(table.querySelector("tbody"));
  $("#campaigns-empty").hidden = campaigns.length > 0;
  table.hidden = campaigns.length === 0;
  for (const campaign of campaigns) {
    const href = `${document.body.dataset.apiRoot.replace(/\/api$/, "")}/dashboard/${encodeURIComponent(campaign.id)}`;
    const badge = h("span", {});
    statusBadge(badge, campaign.status);
    const budget = campaign.settings?.rounds;
    const done = campaign.rounds_done ?? 0;
    const round = budget ? `${done} / ${budget}` : String(done);
    body.append(
      h(
        "tr",
        {},
        h("td", {}, h("a", { href, text: campaign.name || campaign.id })),
        h("td", {}, badge),
        h("td", { text: round }),
        h("td", { className: "muted", text: campaign.prompt || "" }),
      ),
    );
  }
  markRefreshed();
}

async function load() {
  const { data } = await ownerApi("/campaigns");
  return campaignsOf(data);
}

requireOwner(load, (campaigns) => {
  render(campaigns);
  setupCreateForm({ open: campaigns.length === 0 }).catch(showError);
  setInterval(() => load().then(render).catch(showError), 10000);
});
