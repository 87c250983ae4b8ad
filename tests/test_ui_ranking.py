"""The task page's ranking state (``static/js/ranking.js``), run in headless Chromium.

The module is loaded from the real app over HTTP (a coordinator on SQLite in a thread), the
way the task page loads it; each case returns plain data that is checked here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory) -> Iterator[Any]:
    from werkzeug.serving import make_server

    from rankloop.commands.web import create_web_app
    from service import db

    work = tmp_path_factory.mktemp("ui-ranking")
    app = create_web_app(
        {
            "DATABASE_URL": f"sqlite:///{work / 'rankloop.sqlite'}",
            "STORE_URL": str(work / "objects"),
            "BROKER_URL": "memory://",
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    tab = context.new_page()
    # The dashboard without a key makes no API call: a quiet page on the app's origin.
    tab.goto(f"http://127.0.0.1:{server.server_port}/dashboard")
    yield tab
    context.close()
    server.shutdown()
    db.get_engine(app).dispose()


def run(page, body: str) -> Any:
    """Evaluate ``body`` with ``Ranking`` imported; ``body`` returns the data to check."""
    return page.evaluate(
        f"async () => {{ const {{ Ranking }} = await import('/ui-static/js/ranking.js'); {body} }}"
    )


def test_a_full_ranking_needs_all_but_one_and_the_last_is_implied(page):
    result = run(
        page,
        """
        const r = new Ranking(["a", "b", "c", "d"]);
        r.pick("a"); r.pick("c");
        const second = r.toggle("c");          // tapping again takes it back
        r.pick("b");
        const before = r.complete;
        r.pick("d");
        return { second, before, complete: r.complete, order: r.toOrder(), rank: r.rankOf("d") };
        """,
    )
    assert result == {
        "second": "removed",
        "before": False,
        "complete": True,
        "order": ["a", "b", "d", "c"],
        "rank": 3,
    }


def test_undo_takes_back_the_last_pick_only(page):
    result = run(
        page,
        """
        const r = new Ranking(["a", "b", "c"]);
        r.pick("b"); r.pick("a");
        const undone = r.undo();
        const empty = new Ranking(["a"]).undo();
        return { undone, groups: r.groups, empty };
        """,
    )
    assert result == {"undone": "a", "groups": [["b"]], "empty": None}


def test_top_k_stops_at_k_and_a_drop_pushes_the_last_out(page):
    result = run(
        page,
        """
        const r = new Ranking(["a", "b", "c", "d"], { k: 2 });
        r.pick("a");
        const early = r.complete;
        r.pick("b");
        const full = r.pick("c");
        r.moveTo("c", 0);                      // dragged onto the top slot of a full top-2
        return { early, full, order: r.toOrder(), complete: r.complete,
                 bigK: new Ranking(["a", "b"], { k: 5 }).k };
        """,
    )
    assert result == {
        "early": False,
        "full": "full",
        "order": ["c", "a"],
        "complete": True,
        "bigK": None,
    }


def test_ties_group_images_only_where_allowed(page):
    result = run(
        page,
        """
        const tied = new Ranking(["a", "b", "c", "d"], { allowTies: true });
        tied.pick("a"); tied.pick("b", { tie: true }); tied.pick("c");
        const plain = new Ranking(["a", "b", "c"]);
        plain.pick("a"); plain.pick("b", { tie: true });
        tied.remove("a");
        return { tiedRanks: [tied.rankOf("b"), tied.rankOf("c")], tiedOrder: tied.toOrder(),
                 plainOrder: plain.groups, isTied: tied.isTied("b") };
        """,
    )
    # After "a" left the tie, "b" stands alone at the top; "a" and "d" remain unranked.
    assert result == {
        "tiedRanks": [1, 2],
        "tiedOrder": ["b", "c"],
        "plainOrder": [["a"], ["b"]],
        "isTied": False,
    }


def test_move_to_reorders_and_ignores_unknown_images(page):
    result = run(
        page,
        """
        const r = new Ranking(["a", "b", "c"]);
        r.pick("a"); r.pick("b"); r.pick("c");
        r.moveTo("a", 2);
        const unknown = r.moveTo("zzz", 0);
        return { groups: r.groups, unknown, reason: r.pick("zzz") };
        """,
    )
    assert result == {"groups": [["b"], ["c"], ["a"]], "unknown": False, "reason": "unknown image"}
