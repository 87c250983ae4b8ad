"""Every status, image role and feed is named through its enum in ``rankloop.core.contracts``.

A quoted status word in the code (``round_.status == "open"``, ``status="leased"``, ``'open'``
inside raw SQL) would be a second spelling of a closed set, free to drift from it: this scan of
the coordinator, the worker and the tools finds one wherever a word is compared, assigned to a
``status`` or ``role``, used as a key of a status-keyed dict, or quoted in SQL. Tests keep literal words
on purpose: they check the wire format.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from rankloop.core.contracts import (
    CAMPAIGN_CONCLUDED,
    CAMPAIGN_ENDED,
    CAMPAIGN_LIVE,
    CampaignStatus,
    Feed,
    ImageRole,
    RoundStatus,
    TaskStatus,
)
from service.models import Assignment, Campaign, Image, Round

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("service", "gpu_worker", "rankloop")
# Statuses and roles are distinctive words; "order" is also a JSON key and a column, so feed
# words count only where compared with something named ``*feed*``.
WORDS = {m.value for family in (CampaignStatus, RoundStatus, TaskStatus, ImageRole) for m in family}
FEED_WORDS = {m.value for m in Feed}
FIELDS = {"status", "role"}
SQL = re.compile(r"\b(SELECT|UPDATE|INSERT|DELETE|WHERE)\b")
QUOTED = re.compile(r"'(" + "|".join(sorted(WORDS)) + r")'")
# Not these families: a preview's state (responses.Preview: rendering, ready, failed) is typed by
# its Literal; nothing stores it.
ALLOWED = {("service/api/previews.py", "failed"), ("service/api/previews.py", "rendering")}


def _word(node: ast.AST | None, words: set[str] = WORDS) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words:
        return node.value
    return None


def _words_in(node: ast.AST, words: set[str] = WORDS) -> Iterator[str]:
    """The words ``node`` is, or holds as a tuple, list or set of constants, or picks."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        for element in node.elts:
            yield from _words_in(element, words)
    elif isinstance(node, ast.IfExp):
        yield from _words_in(node.body, words)
        yield from _words_in(node.orelse, words)
    elif (word := _word(node, words)) is not None:
        yield word


def _named(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    return ""


def _assigned(targets: list[ast.expr], value: ast.expr) -> Iterator[str]:
    for target in targets:
        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
            for t, v in zip(target.elts, value.elts, strict=False):
                yield from _assigned([t], v)
        elif _named(target) in FIELDS:
            yield from _words_in(value)


def status_words(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, word) of each status word used as a value in ``tree``."""
    for node in ast.walk(tree):
        found: list[str] = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                found += _words_in(operand)
            if any("feed" in _named(o).lower() for o in operands):
                for operand in operands:
                    found += _words_in(operand, FEED_WORDS)
        elif isinstance(node, ast.Call):
            if _named(node.func) in {"in_", "not_in"}:
                for arg in node.args:
                    found += _words_in(arg)
            for keyword in node.keywords:
                if keyword.arg in FIELDS or keyword.arg == "default":
                    found += _words_in(keyword.value)
        elif isinstance(node, ast.Assign):
            found += _assigned(node.targets, node.value)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            found += _assigned([node.target], node.value)
        elif isinstance(node, ast.Dict):
            keys = [word for key in node.keys if key is not None for word in _words_in(key)]
            found += keys if len(keys) > 1 else []  # keyed by status (one may be a name)
            for key, value in zip(node.keys, node.values, strict=True):
                if _word(key, FIELDS) is not None:
                    found += _words_in(value)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and SQL.search(node.value)
        ):
            found += QUOTED.findall(node.value)
        yield from ((getattr(node, "lineno", 0), word) for word in found)


def test_no_status_word_outside_its_enum():
    quoted = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            tree = ast.parse(path.read_text(), filename=name)
            quoted += [
                f"{name}:{line}: {word!r}"
                for line, word in status_words(tree)
                if (name, word) not in ALLOWED
            ]
    assert not quoted, "name these through rankloop.core.contracts' enums:\n" + "\n".join(quoted)


@pytest.mark.parametrize(
    "source",
    [
        'x = round_.status == "open"',
        'q = select(t).where(t.c.status.in_(("leased", "submitted")))',
        'update(t).values(status="submitted")',
        'campaign.status, campaign.finished_at = "finished", now',
        'row = {"id": 1, "status": "closed"}',
        'since = {"rendering": 1, "open": 2}',
        "sql = text(\"UPDATE assignments SET status = 'submitted' WHERE id = :id\")",
        'image = Image(role="attention")',
        'image = {"role": "attention" if last else "candidate"}',
        'if feed == "pairwise": pass',
    ],
)
def test_the_scan_finds_a_quoted_word(source):
    assert list(status_words(ast.parse(source)))


@pytest.mark.parametrize(
    "source",
    [
        "x = round_.status == RoundStatus.OPEN",
        'said("paused")',  # a waiting reason, not a status
        'order = body["order"]',
        'if "order" not in row: pass',
        'log.info("round %s is open", n)',
        'params = {"failed": 1, "quota": 2}',
    ],
)
def test_the_scan_leaves_other_words_alone(source):
    assert not list(status_words(ast.parse(source)))


def test_every_word_fits_its_column():
    """The columns stay strings: each family's longest word must fit the column's length."""
    for column, family in (
        (Campaign.__table__.c.status, CampaignStatus),
        (Round.__table__.c.status, RoundStatus),
        (Assignment.__table__.c.status, TaskStatus),
        (Image.__table__.c.role, ImageRole),
    ):
        assert max(len(member) for member in family) <= column.type.length, column


def test_groups_are_statuses_of_their_family():
    assert set(CAMPAIGN_ENDED) | set(CAMPAIGN_LIVE) < set(CampaignStatus)
    assert not set(CAMPAIGN_ENDED) & set(CAMPAIGN_LIVE)
    # A concluded campaign (its participants are owed the completion code) ended, not failed.
    assert set(CAMPAIGN_CONCLUDED) == set(CAMPAIGN_ENDED) - {CampaignStatus.FAILED}
    # A member is its word: columns, JSON and SQL parameters see the plain string.
    assert RoundStatus.OPEN == "open" and f"{TaskStatus.LEASED}" == "leased"


def test_the_feed_literal_names_the_feed_words():
    """Pydantic fields name feeds by a Literal (strict mode refuses a plain word for an enum);
    it holds exactly the enum's words."""
    from typing import get_args

    from rankloop.core.contracts import FEEDS, Feed, FeedName

    assert set(get_args(FeedName)) == {feed.value for feed in Feed} == set(FEEDS)
