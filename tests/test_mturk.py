"""MTurk's ExternalQuestion and the join link's rate limit, through the API (no browser).

MTurk frames ``/join`` and the task page on its worker site and takes the finished assignment as
a form posted to ``<turkSubmitTo>/mturk/externalSubmit``: those pages may be framed by MTurk's
origins only, the task page may post forms to them only, and ``turkSubmitTo`` is carried to the
page only when it is MTurk's. tests/test_ui_mturk.py posts the form in a browser.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from rankloop.core import mturk
from service.join_pages import PAGES
from tests.fixtures.coordinator import make_app

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
MTURK = " ".join(mturk.SITE_ORIGINS)


def directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_only_join_and_the_task_page_may_be_framed_and_only_by_mturk(app, owner):
    client = app.test_client()
    task = client.get("/task")
    assert directives(task)["frame-ancestors"] == MTURK
    assert directives(task)["form-action"] == MTURK
    assert "X-Frame-Options" not in task.headers
    assert mturk.SITE_ORIGINS == (
        "https://www.mturk.com", "https://workersandbox.mturk.com", "https://worker.mturk.com"
    )  # fmt: skip
    for path in ("/dashboard", "/ui-static/js/task.js", "/api/openapi.json", "/api/me"):
        other = client.get(path)
        assert directives(other)["frame-ancestors"] == "'none'", path
        assert directives(other).get("form-action", "'none'") == "'none'", path
        assert other.headers["X-Frame-Options"] == "DENY", path
        other.close()

    cid = owner.campaign(start=True, recruit=True, recruit_cap=0)["id"]
    joined = client.get(f"/join/{cid}?workerId=w1&assignmentId=a1", headers=BROWSER)
    refused = client.get(f"/join/{cid}?workerId=w1", headers=BROWSER)  # full: a page
    preview = client.get(f"/join/{cid}?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE", headers=BROWSER)
    for response in (refused, preview):
        assert directives(response)["frame-ancestors"] == MTURK
        assert directives(response)["form-action"] == "'none'"
        assert "X-Frame-Options" not in response.headers
    assert joined.status_code == 409 and refused.status_code == 409
    assert preview.status_code == 200


def test_an_mturk_worker_is_sent_to_the_task_page_with_the_assignment(app, owner):
    cid = owner.campaign(start=True, recruit=True)["id"]
    client = app.test_client()
    hit = "workerId={w}&assignmentId=a%26{w}&hitId=h1&turkSubmitTo={to}"
    sandbox = client.get(
        f"/join/{cid}?" + hit.format(w="w1", to="https://workersandbox.mturk.com/")
    )
    assert sandbox.status_code == 302 and "X-Frame-Options" not in sandbox.headers
    assert directives(sandbox)["frame-ancestors"] == MTURK
    fragment = parse_qs(sandbox.location.split("#", 1)[1])
    assert fragment["assignmentId"] == ["a&w1"]
    assert fragment["turkSubmitTo"] == ["https://workersandbox.mturk.com"]
    # A reopened HIT (MTurk reloads the frame) brings the assignment to the first browser again.
    again = parse_qs(client.get(f"/join/{cid}?" + hit.format(w="w1", to="https://www.mturk.com")).location.split("#", 1)[1])  # fmt: skip
    assert again == {
        "rejoin": [cid], "assignmentId": ["a&w1"], "turkSubmitTo": ["https://www.mturk.com"]
    }  # fmt: skip

    # Anywhere else is no MTurk server: neither carried to the page nor kept.
    for w, to in (("w2", "https://evil.example"), ("w3", "https://www.mturk.com.evil.example"),
                  ("w4", "http://www.mturk.com"), ("w5", "")):  # fmt: skip
        location = client.get(f"/join/{cid}?" + hit.format(w=w, to=to)).location
        assert location.startswith("/task#token=") and "assignmentId" not in location, to
    listed = owner.get(f"/api/campaigns/{cid}/annotators").json["annotators"]
    contexts = {
        a["participant_id"]: owner.get(f"/api/campaigns/{cid}/annotators/{a['id']}").json[
            "participant_context"
        ]
        for a in listed
    }
    assert contexts["w1"] == {
        "assignment_id": "a&w1", "hit_id": "h1",
        "turk_submit_to": "https://workersandbox.mturk.com",
    }  # fmt: skip
    assert contexts["w2"] == {"assignment_id": "a&w2", "hit_id": "h1"}


def test_a_stand_in_for_mturk_is_allowed_in_tests_only():
    stand_in = "http://localhost:8765"
    testing = mturk.stand_in_origin(stand_in + "/", testing=True)
    assert mturk.submit_origin(stand_in + "/", testing) == stand_in
    assert stand_in in mturk.site_origins(testing)
    production = mturk.stand_in_origin(stand_in, testing=False)  # set, but not a test: ignored
    assert production is None
    assert mturk.submit_origin(stand_in, production) is None
    assert mturk.site_origins(production) == mturk.SITE_ORIGINS
    # worker.mturk.com frames HITs but is not where MTurk says to post.
    assert mturk.submit_origin("https://worker.mturk.com", production) is None


def test_too_many_joins_answer_a_page_to_a_browser_and_json_to_a_client(tmp_path):
    app = make_app(tmp_path, RATELIMIT_JOIN="2 per minute")
    client = app.test_client()
    for _ in range(2):
        assert client.get("/join/nope?workerId=w").status_code == 404
    page = client.get("/join/nope?workerId=w", headers={**BROWSER, "Accept-Language": "de"})
    html = page.get_data(as_text=True)
    assert (page.status_code, page.mimetype) == (429, "text/html")
    assert f'<h1 id="join-title">{PAGES["de"]["too_many"][0]}</h1>' in html
    assert PAGES["de"]["too_many"][1] in html and '<html lang="de">' in html
    assert 1 <= int(page.headers["Retry-After"]) <= 60
    assert page.headers["Cache-Control"] == "no-store"
    assert directives(page)["frame-ancestors"] == MTURK
    english = client.get("/join/nope?workerId=w", headers=BROWSER).get_data(as_text=True)
    assert PAGES["en"]["too_many"][0] == "Too many tries"
    assert "Please try again in a minute." in english
    for headers in ({"Accept": "application/json"}, {}):
        answer = client.get("/join/nope?workerId=w", headers=headers)
        assert answer.status_code == 429 and answer.json["error"]["code"] == "too_many_requests"
        assert "Retry-After" in answer.headers
