"""Found while building batch exchange: the online row query fails on a text filter once a
merge (an upsert or delete load) has written files of the table (delta-rs writes them with
`string_view` columns; the filter DuckDB pushes into the Arrow dataset is `string` = and
pyarrow has no such kernel). The row reader now declares text columns as views
(`core.reading._text_as_views`)."""

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


def test_a_text_row_filter_reads_rows_after_an_upsert_load(node: Platform) -> None:
    w = world(node, rows=10)
    grant(w, ["id", "city"], row_filter="city = '福州市'")
    load(w, "upsert", people([3, 4], salt=1))
    with node.factory.begin() as session:
        page = query_rows(session, node.lake, w.consumer, w.code, limit=50)
    assert page.table.num_rows > 0
