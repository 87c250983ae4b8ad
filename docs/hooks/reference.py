"""MkDocs hook: the reference pages are generated from the code at every build.

A page that says ``<!-- generated: NAME -->`` gets that reference
(``rankloop.commands.reference``: settings, campaign, datasets, cli, api), and the OpenAPI
document the coordinator serves is written beside the API reference, so nothing in the reference
is copied by hand and nothing can drift from the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # this checkout's code, whatever the venv has installed
    sys.path.insert(0, str(ROOT))

from rankloop.commands import reference  # noqa: E402


def on_files(files, config):
    document = json.dumps(reference.openapi_document(), indent=2)
    files.append(File.generated(config, "reference/openapi.json", content=document))
    return files


def on_page_markdown(markdown, page, config, files):
    return reference.fill(markdown)
