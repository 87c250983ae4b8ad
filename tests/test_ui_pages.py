"""The UI's pages and assets as served by the real app (Flask test client, no browser)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from annotator_ui.inline_scripts import read_inline_script
from annotator_ui.security import content_security_policy, image_origins
from rankloop.core import mturk
from rankloop.core.settings import Settings, load_settings, settings_of

STATIC = Path(__file__).resolve().parents[1] / "annotator_ui" / "static"
PAGES = [
    "/",
    "/task",
    "/dashboard",
    "/dashboard/0123456789abcdef0123456789abcdef",
    "/dashboard/studies",
    "/dashboard/study/0123456789abcdef0123456789abcdef",
]


def _app(tmp_path, pages: bool = True, **config):
    from rankloop.commands.web import create_web_app
    from service.app import create_app

    return (create_web_app if pages else create_app)(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'ui.sqlite'}",
            "STORE_URL": str(tmp_path / "objects"),
            "BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
            **config,
        }
    )


@pytest.fixture()
def client(tmp_path):
    return _app(tmp_path).test_client()


class _Assets(HTMLParser):
    """Collects what a page loads and anything inline that a strict CSP would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = True
            if "src" not in attributes:
                self.inline.append("inline <script>")
        if tag == "style":
            self.inline.append("<style> element")
        if "style" in attributes:
            self.inline.append(f"style attribute on <{tag}>")
        self.inline += [
            f"{name} handler on <{tag}>" for name in attributes if name.startswith("on")
        ]
        for name in ("src", "href"):
            if tag in ("script", "link", "img") and attributes.get(name):
                self.urls.append(attributes[name])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


@pytest.mark.parametrize("path", PAGES)
def test_page_sends_a_strict_content_security_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    # Scripts from this origin, plus on the task page early.js inline, by its hash alone
    # (tests/test_task_page_assets.py checks the hash against the page).
    hashes = [read_inline_script("js/early.js").csp_source] if path == "/task" else []
    assert directives["script-src"].split() == ["'self'", *hashes]
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    # Only the task page may be framed, and only by MTurk (its ExternalQuestion HITs), to
    # which alone it may post its form.
    framed = " ".join(mturk.SITE_ORIGINS) if path == "/task" else "'none'"
    assert directives["frame-ancestors"] == framed
    assert directives.get("form-action", "'none'") == framed
    assert ("X-Frame-Options" in response.headers) == (path != "/task")
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", PAGES)
def test_page_loads_only_packaged_assets_and_nothing_inline(client, path):
    page = _Assets()
    page.feed(client.get(path).get_data(as_text=True))
    # The task page's one inline script is early.js, allowed by its hash (see above).
    assert page.inline == (["inline <script>"] if path == "/task" else [])
    assert page.urls, "the page should load its script and stylesheet"
    for url in page.urls:
        assert url.startswith("/ui-static/"), f"{url} is not shipped with the package"
        asset = client.get(url)
        assert asset.status_code == 200, url
        # Assets carry the pages' policy, not the API's blanket default-src 'none'.
        policy = content_security_policy(settings_of(client.application))
        assert asset.headers["Content-Security-Policy"] == policy, url
        asset.close()


def test_every_module_a_page_imports_is_served(client):
    for script in sorted((STATIC / "js").glob("*.js")):
        for module in re.findall(r'from "\./([\w-]+\.js)"', script.read_text()):
            response = client.get(f"/ui-static/js/{module}")
            assert response.status_code == 200, f"{script.name} imports missing {module}"
            assert response.mimetype in ("text/javascript", "application/javascript")
            response.close()


def test_scripts_never_parse_strings_as_html_or_code():
    forbidden = re.compile(
        r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\("
    )
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted((STATIC / "js").glob("*.js"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []


def test_campaign_id_in_the_url_is_escaped_in_the_page(client):
    response = client.get("/dashboard/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<img src=x onerror=alert(1)>" not in body
    assert 'data-campaign-id="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in body


def test_images_may_come_from_the_object_stores_public_endpoint_only():
    s3 = {
        "STORE_URL": "s3://rankloop",
        "S3_ENDPOINT_URL": "http://seaweed.internal:8333",
        "S3_PUBLIC_ENDPOINT_URL": "https://images.example.org/store",
    }

    def settings(**values: object) -> Settings:
        return load_settings({}, values)

    assert image_origins(settings(**s3)) == ["https://images.example.org"]
    policy = content_security_policy(settings(**s3))
    assert "img-src 'self' data: blob: https://images.example.org;" in policy
    unset = settings(**{**s3, "S3_PUBLIC_ENDPOINT_URL": None})
    assert image_origins(unset) == ["http://seaweed.internal:8333"]
    local = {"STORE_URL": "/var/objects", "S3_ENDPOINT_URL": "http://seaweed.internal:8333"}
    assert image_origins(settings(**local)) == []
    assert image_origins(settings(UI_IMAGE_ORIGINS="https://cdn.example.org")) == [
        "https://cdn.example.org"
    ]


def test_the_address_alone_says_what_this_is_and_links_the_console_and_docs(tmp_path):
    """``/`` is a page, not a JSON 404: what this server is, links to the console, the API
    document and the documentation (its published site when RANKLOOP_DOCS_URL names one)."""
    response = _app(tmp_path).test_client().get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "This is a rankloop server" in page
    assert 'href="/dashboard"' in page and 'href="/api/openapi.json"' in page
    assert "make docs" in page
    published = _app(tmp_path, DOCS_URL="https://docs.example.org/rankloop/").test_client()
    assert 'href="https://docs.example.org/rankloop/"' in published.get("/").get_data(as_text=True)
    # The coordinator's app alone serves the API, and / stays its JSON 404 there.
    assert _app(tmp_path, pages=False).test_client().get("/").status_code == 404


def test_the_pages_are_composed_above_and_the_api_serves_alone(tmp_path):
    """The web app (rankloop.commands.web) composes the pages with the coordinator, which never
    imports them; the coordinator's app alone serves the API and no page."""
    client = _app(tmp_path, pages=False).test_client()
    assert client.get("/task").status_code == 404
    assert client.get("/ui-static/js/task.js").status_code == 404
    assert client.get("/api/openapi.json").status_code == 200
    assert _app(tmp_path).test_client().get("/task").status_code == 200
