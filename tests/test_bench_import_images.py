"""``rankloop bench import-images`` at a tiny size: the table it writes is an image set the
import takes, and the command reports every item imported (speeds are the command's to print,
not a test's to assert)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rankloop.bench.import_images import PER_ITEM, import_images_command, write_table
from service.image_sets.reading import items_of


def test_bench_table_is_an_image_set_and_the_command_reports(tmp_path):
    table = tmp_path / "items.parquet"
    write_table(table, 30)
    items = list(items_of(table))
    assert [len(i.images) for i in items] == [PER_ITEM] * 30
    out = tmp_path / "result.json"
    result = CliRunner().invoke(
        import_images_command, ["--items", "25", "--small", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert [r["items"] for r in rows] == [5, 25]
    assert [r["images"] for r in rows] == [5 * PER_ITEM, 25 * PER_ITEM]
