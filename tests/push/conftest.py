"""Nodes for the event tests: SQLite and PostgreSQL, jobs run when the test says so."""

from __future__ import annotations

from tests.ingest.conftest import node, sqlite_node

__all__ = ["node", "sqlite_node"]
