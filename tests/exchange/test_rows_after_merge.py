"""Found while building batch exchange: the online row query fails on a text filter once a
merge (an upsert or delete load) has written files of the table (delta-rs writes them with
`string_view` columns; the filter DuckDB pushes into the Arrow dataset is `string` = and
pyarrow has no such kernel). Batch deliveries read through `read_table`, which no longer
pushes filters into the dataset; `read_rows` (the row API) still does. Strict xfail: it
passes the day `core.reading.read_rows` is fixed, and then this mark must go."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from minyun.core.platform import Platform
from minyun.query.service import query_rows
from tests.exchange.batchkit import grant, load, open_node, people, world


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Platform]:
    made = open_node(tmp_path)
    yield made
    made.close()


@pytest.mark.xfail(strict=True, reason="read_rows pushes a text filter into string_view files")
def test_a_text_row_filter_reads_rows_after_an_upsert_load(node: Platform) -> None:
    w = world(node, rows=10)
    grant(w, ["id", "city"], row_filter="city = '福州市'")
    load(w, "upsert", people([3, 4], salt=1))
    with node.factory.begin() as session:
        page = query_rows(session, node.lake, w.consumer, w.code, limit=50)
    assert page.table.num_rows > 0
