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

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, request

from annotator_ui.inline_scripts import inlined_script_sources
from rankloop.core import mturk

# Pages a crowd platform shows in a frame of its own (MTurk's ExternalQuestion).
FRAMED_BY_MTURK = ("ui.task_page",)


def image_origins(config: Mapping[str, Any]) -> list[str]:
    """Origins, besides this one, that images may come from.

    The object store's public endpoint (``S3_PUBLIC_ENDPOINT_URL``, else ``S3_ENDPOINT_URL``)
    when ``STORE_URL`` is ``s3://...``, plus any listed, space-separated, in
    ``UI_IMAGE_ORIGINS`` (a CDN in front of the store, say).
    """
    origins: list[str] = []
    if str(config.get("STORE_URL") or "").startswith("s3://"):
        endpoint = config.get("S3_PUBLIC_ENDPOINT_URL") or config.get("S3_ENDPOINT_URL")
        if endpoint:
            parts = urlsplit(str(endpoint))
            if parts.scheme and parts.netloc:
                origins.append(f"{parts.scheme}://{parts.netloc}")
    origins.extend(str(config.get("UI_IMAGE_ORIGINS") or "").split())
    return origins


def content_security_policy(
    config: Mapping[str, Any], framed_by_mturk: bool = False, script_hashes: Sequence[str] = ()
) -> str:
    """The CSP header value for the UI; ``framed_by_mturk`` for the task page.

    ``script_hashes``: the hash-sources (``'sha256-...'``) of the scripts the page inlines.
    """
    mturk_origins = " ".join(mturk.site_origins(config)) if framed_by_mturk else "'none'"
    img_src = " ".join(["'self'", "data:", "blob:", *image_origins(config)])
    directives = {
        "default-src": "'none'",
        "script-src": " ".join(["'self'", *script_hashes]),
        "style-src": "'self'",
        "img-src": img_src,
        "connect-src": "'self'",
        "font-src": "'self'",
        "form-action": mturk_origins,
        "frame-ancestors": mturk_origins,
        "base-uri": "'none'",
        "object-src": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def add_security_headers(response: Response) -> Response:
    """Set CSP and the usual hardening headers; pages (HTML) are never cached."""
    headers = response.headers
    framed = request.endpoint in FRAMED_BY_MTURK
    headers["Content-Security-Policy"] = content_security_policy(
        current_app.config, framed, inlined_script_sources()
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
