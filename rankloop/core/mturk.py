"""Amazon Mechanical Turk's ExternalQuestion: who may frame the task page, and where it posts.

MTurk shows an ExternalQuestion HIT's URL in an iframe on its worker site, appending
``assignmentId``, ``hitId``, ``workerId`` and ``turkSubmitTo`` (the MTurk server to post the
answer to: ``https://www.mturk.com`` or, in the sandbox, ``https://workersandbox.mturk.com``).
The worker finishes by posting a form to ``<turkSubmitTo>/mturk/externalSubmit`` with the
``assignmentId`` and at least one answer field. These are the only origins the pages let frame
them or receive a form; the coordinator (``/join``'s pages) and the UI (``/task``) both read them
from here.
"""

from __future__ import annotations

from typing import Final

# Where MTurk says to post an assignment (turkSubmitTo): production and the sandbox.
SUBMIT_ORIGINS: Final = ("https://www.mturk.com", "https://workersandbox.mturk.com")
# The production worker site frames HITs from worker.mturk.com (the sandbox from its own origin),
# and MTurk may send a posted form on there: it frames and receives as well.
SITE_ORIGINS: Final = (*SUBMIT_ORIGINS, "https://worker.mturk.com")
SUBMIT_PATH: Final = "/mturk/externalSubmit"


def stand_in_origin(stand_in: str | None, testing: bool) -> str | None:
    """A test's stand-in for MTurk (``Settings.mturk_test_origin``, an http://localhost server)
    as an origin, only when the app is testing: production stays restricted to MTurk."""
    return str(stand_in).rstrip("/") if testing and stand_in else None


def site_origins(stand_in: str | None = None) -> tuple[str, ...]:
    """Origins that may frame ``/join`` and ``/task`` and receive the task page's form;
    ``stand_in``: :func:`stand_in_origin`."""
    return (*SITE_ORIGINS, *((stand_in,) if stand_in else ()))


def submit_origin(turk_submit_to: str | None, stand_in: str | None = None) -> str | None:
    """MTurk's ``turkSubmitTo`` as an origin when it is one MTurk posts to, else None;
    ``stand_in``: :func:`stand_in_origin`."""
    if not turk_submit_to:
        return None
    origin = turk_submit_to.strip().rstrip("/")
    return origin if origin in (*SUBMIT_ORIGINS, *((stand_in,) if stand_in else ())) else None
