"""Security headers for the UI's pages and assets.

The Content-Security-Policy allows scripts and styles from this origin only (no ``eval``, and
no inline script but those a page inlines by :func:`annotator_ui.inline_scripts.inline_script`,
each allowed by its own hash in that page's header), API calls to this origin only, and images
from this origin plus the object store's public endpoint when images are served from S3 by
presigned URL. Forms may not post anywhere (the pages talk to the API through ``fetch``) and
no site may frame a page, except on the task page: MTurk shows it in a frame of its worker site
and takes the finished assignment as a posted form, so there MTurk's origins
(:mod:`rankloop.core.mturk`) may frame it and receive a form.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from flask import Response, current_app, request

from annotator_ui.inline_scripts import inlined_script_sources
from rankloop.core import mturk
from rankloop.core.settings import Settings, settings_of

# Pages a crowd platform shows in a frame of its own (MTurk's ExternalQuestion).
FRAMED_BY_MTURK = ("ui.task_page",)


def image_origins(settings: Settings) -> list[str]:
    """Origins, besides this one, that images may come from.

    The object store's public endpoint (``settings.s3_public_endpoint_url``, else
    ``s3_endpoint_url``) when ``store_url`` is ``s3://...``, plus any listed, space-separated,
    in ``ui_image_origins`` (``RANKLOOP_UI_IMAGE_ORIGINS``: a CDN in front of the store, say).
    """
    origins: list[str] = []
    if settings.store_url.startswith("s3://"):
        endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        if endpoint:
            parts = urlsplit(str(endpoint))
            if parts.scheme and parts.netloc:
                origins.append(f"{parts.scheme}://{parts.netloc}")
    origins.extend(settings.ui_image_origins.split())
    return origins


def stream_origins(settings: Settings) -> list[str]:
    """The stream process's origin (``RANKLOOP_STREAM_URL``), when pages open streams there."""
    parts = urlsplit(settings.stream_url or "")
    return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme and parts.netloc else []


def content_security_policy(
    settings: Settings,
    framed_by_mturk: bool = False,
    script_hashes: Sequence[str] = (),
    mturk_stand_in: str | None = None,
) -> str:
    """The CSP header value for the UI; ``framed_by_mturk`` for the task page.

    ``script_hashes``: the hash-sources (``'sha256-...'``) of the scripts the page inlines;
    ``mturk_stand_in``: a test's stand-in for MTurk (:func:`rankloop.core.mturk.stand_in_origin`).
    """
    framers = " ".join(mturk.site_origins(mturk_stand_in)) if framed_by_mturk else "'none'"
    img_src = " ".join(["'self'", "data:", "blob:", *image_origins(settings)])
    directives = {
        "default-src": "'none'",
        "script-src": " ".join(["'self'", *script_hashes]),
        "style-src": "'self'",
        "img-src": img_src,
        "connect-src": " ".join(["'self'", *stream_origins(settings)]),
        "font-src": "'self'",
        "form-action": framers,
        "frame-ancestors": framers,
        "base-uri": "'none'",
        "object-src": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def add_security_headers(response: Response) -> Response:
    """Set CSP and the usual hardening headers; pages (HTML) are never cached."""
    headers = response.headers
    framed = request.endpoint in FRAMED_BY_MTURK
    settings = settings_of(current_app)
    stand_in = mturk.stand_in_origin(settings.mturk_test_origin, current_app.testing)
    headers["Content-Security-Policy"] = content_security_policy(
        settings, framed, inlined_script_sources(), stand_in
    )
    headers["X-Content-Type-Options"] = "nosniff"
    if framed:
        # X-Frame-Options cannot name an origin (ALLOW-FROM is gone): the CSP decides.
        headers.pop("X-Frame-Options", None)
    else:
        headers["X-Frame-Options"] = "DENY"
    # The annotator token sits in the URL fragment, which browsers never send as a referrer,
    # but "no-referrer" also keeps task and campaign paths from leaking to image hosts.
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if response.mimetype == "text/html":
        headers["Cache-Control"] = "no-store"
    return response
