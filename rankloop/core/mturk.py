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

from collections.abc import Mapping
from typing import Any, Final

# Where MTurk says to post an assignment (turkSubmitTo): production and the sandbox.
SUBMIT_ORIGINS: Final = ("https://www.mturk.com", "https://workersandbox.mturk.com")
# The production worker site frames HITs from worker.mturk.com (the sandbox from its own origin),
# and MTurk may send a posted form on there: it frames and receives as well.
SITE_ORIGINS: Final = (*SUBMIT_ORIGINS, "https://worker.mturk.com")
SUBMIT_PATH: Final = "/mturk/externalSubmit"
# A test's stand-in for MTurk (an http://localhost server): read from the Flask config only when
# TESTING is on. No RANKLOOP_* variable sets it, so production stays restricted to MTurk.
TEST_ORIGIN_KEY: Final = "MTURK_TEST_ORIGIN"


def _test_origin(config: Mapping[str, Any]) -> tuple[str, ...]:
    origin = config.get(TEST_ORIGIN_KEY) if config.get("TESTING") else None
    return (str(origin).rstrip("/"),) if origin else ()


def site_origins(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Origins that may frame ``/join`` and ``/task`` and receive the task page's form."""
    return (*SITE_ORIGINS, *_test_origin(config))


def submit_origin(turk_submit_to: str | None, config: Mapping[str, Any]) -> str | None:
    """MTurk's ``turkSubmitTo`` as an origin when it is one MTurk posts to, else None."""
    if not turk_submit_to:
        return None
    origin = turk_submit_to.strip().rstrip("/")
    return origin if origin in (*SUBMIT_ORIGINS, *_test_origin(config)) else None
