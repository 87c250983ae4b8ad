"""Scripts a page carries inline, and the CSP hash that allows each of them.

A script inlined into a page runs as soon as the page is parsed, without a round trip of its
own (over half a second on a slow phone connection). The policy still forbids inline script
(no ``'unsafe-inline'``): each one is allowed by the SHA-256 of its text, computed here from the
same text the page carries. A page inlines a script with ``{{ inline_script("js/early.js") }}``;
that records the hash for the response, and :mod:`annotator_ui.security` names it in the
``script-src`` of that response only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from flask import g
from markupsafe import Markup

STATIC = Path(__file__).resolve().parent / "static"
# Text that would end the script element early, or change how the HTML parser reads its body.
_BREAKS_OUT = re.compile(r"</script|<!--", re.I)


@dataclass(frozen=True)
class InlineScript:
    text: str
    csp_source: str  # 'sha256-<base64>', the form a script-src directive takes


@cache
def read_inline_script(name: str) -> InlineScript:
    """``static/<name>`` (a module with no imports), read once, and its hash-source."""
    text = (STATIC / name).read_text(encoding="utf-8")
    if _BREAKS_OUT.search(text):
        raise ValueError(f"{name} cannot be inlined: it contains '</script' or '<!--'")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return InlineScript(text=text, csp_source=f"'sha256-{digest}'")


def inline_script(name: str, async_: bool = False) -> Markup:
    """The module script element that carries ``static/<name>`` inline; its hash goes into this
    response's CSP. ``async_``: it runs at once, not held back until the stylesheets are in.

    The text goes in exactly as hashed: a byte of whitespace more and the browser refuses it.
    """
    script = read_inline_script(name)
    sources = g.setdefault("inline_script_sources", [])
    if script.csp_source not in sources:
        sources.append(script.csp_source)
    start = '<script type="module" async>' if async_ else '<script type="module">'
    return Markup(start) + Markup(script.text) + Markup("</script>")


def inlined_script_sources() -> list[str]:
    """The hash-sources of the scripts this response's page inlined (none for other responses)."""
    return list(g.get("inline_script_sources", ()))
