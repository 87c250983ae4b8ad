// The first task, asked for while the page's other modules are still on their way (on a slow
// phone connection they take seconds, and the images can only start after the task's answer),
// and its thumbnails as soon as that answer is in. task.html carries this module inline (an
// async module, allowed by the hash of this file's exact text in the page's CSP:
// annotator_ui/inline_scripts.py), so it runs as the page is parsed, with no request of its own;
// it must import nothing, nor hold a script end tag or a comment opener (inline_scripts.py
// refuses it then). api.js hands the answer to the first `GET /tasks/next` made with the same
// credential (task.js); nothing else uses it. The credential is read the way task.js reads it
// (the link's #token=, else the tab's); a rejoin link (#rejoin=) brings none, so nothing is
// asked for early then.

const fragment = new URLSearchParams(window.location.hash.replace(/^#/, ""));
const credential =
  fragment.get("token") || (fragment.has("rejoin") ? null : sessionStorage.getItem("rankloop.token")); // identity.js TOKEN_KEY

function fetchThumbnails(response) {
  if (response.status !== 200) return;
  response
    .clone()
    .json()
    .then((task) =>
      task.images.forEach((image) => {
        new Image().src = image.thumb_url || image.url;
      }),
    )
    .catch(() => {});
}

if (credential) {
  const root = document.body?.dataset.apiRoot || "/api";
  const response = fetch(`${root}/tasks/next`, {
    headers: { Accept: "application/json", Authorization: `Bearer ${credential}` },
    credentials: "omit",
    cache: "no-store",
  }).then((answer) => {
    fetchThumbnails(answer);
    return Object.assign(answer, { receivedAt: performance.now() });
  });
  // A failure is api.js's to report when task.js takes the answer, not an uncaught error now.
  response.catch(() => {});
  window.rankloopEarly = { path: "/tasks/next", credential, response };
}
