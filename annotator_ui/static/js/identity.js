// Whose page this is: the annotator's token, from the link's fragment or, for a participant
// who opened the study link again, from this browser's first visit.

// A participant who opens the study link again is sent to #rejoin=<campaign> without a token
// (a second join never takes over an identity): the token this browser got for that campaign
// on the first visit, kept in localStorage, continues the study.
const CAMPAIGN_TOKEN = "rankloop.campaign.";
// Where the tab keeps the annotator's token (early.js, which imports nothing, reads it too).
export const TOKEN_KEY = "rankloop.token";

export function rejoinedToken() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  const campaign = params.get("rejoin");
  if (!campaign) return null;
  history.replaceState(null, "", window.location.pathname + window.location.search);
  const token = localStorage.getItem(CAMPAIGN_TOKEN + campaign);
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  return token || "";
}

// The token is kept per campaign, so a second visit through the study link finds it.
export function rememberCampaign(campaignId, token) {
  if (campaignId) localStorage.setItem(CAMPAIGN_TOKEN + campaignId, token);
}

// A token the server turned down is forgotten everywhere this browser kept it.
// `keepInTab`: the tab keeps it all the same (a revoked token: a reload says so again).
export function forgetToken(token, { keepInTab = false } = {}) {
  for (const key of Object.keys(localStorage)) {
    if (key.startsWith(CAMPAIGN_TOKEN) && localStorage.getItem(key) === token) {
      localStorage.removeItem(key);
    }
  }
  if (!keepInTab) sessionStorage.removeItem(TOKEN_KEY);
}
