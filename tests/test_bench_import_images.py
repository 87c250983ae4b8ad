"""``rankloop bench import-images`` at a tiny size: the table it writes is an image set the
import takes, and the command reports every item imported (speeds are the command's to print,
not a test's to assert)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rankloop.bench.import_images import (
    PER_ITEM,
    import_images_command,
    write_dataset_folder,
    write_table,
)
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


def test_bench_datasets_folder_loads_in_datasets_and_imports(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "items"
    write_dataset_folder(folder, 12)
    loaded = datasets.load_from_disk(str(folder))  # the layout is datasets' own
    assert len(loaded) == 12 and loaded.features["image_0"] == datasets.Image()
    items = list(items_of(folder))
    assert [len(i.images) for i in items] == [PER_ITEM] * 12
    assert items[3].prompt == "prompt 3" and items[3].images[2].model == "model-2"
    out = tmp_path / "result.json"
    result = CliRunner().invoke(import_images_command, [
        "--items", "10", "--small", "0", "--source", "datasets", "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [(r["source"], r["items"]) for r in json.loads(out.read_text())["rows"]] == [
        ("datasets", 10)
    ]
