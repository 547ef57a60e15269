"""Entity resolution (一人一档 / 一企一档): read the linking resources, link, keep ids stable.

A resource takes part when its current schema marks fields with the minyun key `link`
(`core.tableschema`). Its rows are read through `ingest.service.read_rows`, i.e. an
`AccessPlan` from `core.security.authorize` and the core lake reader, each read audited;
the linkage itself (`subjects.linkage`) gets them as Arrow.

A full run scores every candidate pair, clusters at `LINK_THRESHOLD` and hands the clusters
to `linkage.assign_ids`, so a subject keeps its id when it grows and merges and splits are
recorded. An incremental run (the default once links exist) links only new or changed rows
against all the others. Steward decisions on uncertain pairs (`decide_review`) move rows at
once and are replayed by every later run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Table, delete, insert, select
from sqlalchemy.orm import Session

from minyun.catalog import service as catalog
from minyun.catalog.models import Resource, ResourceStatus
from minyun.core import audit, clock, policies
from minyun.core.errors import Invalid, NotFound
from minyun.core.lake import Lake
from minyun.core.reading import reader_secret
from minyun.core.security import Principal, authorize
from minyun.core.tableschema import TableSchema
from minyun.ingest import service as ingest
from minyun.subjects import linkage, reviews
from minyun.subjects.linkage import Engine, Kind
from minyun.subjects.models import (
    ChangeKind,
    ReviewStatus,
    SubjectChange,
    SubjectLink,
    SubjectModel,
    SubjectReview,
    SubjectRun,
)

__all__ = [
    "COLUMNS",
    "Progress",
    "linking_resources",
    "links_table",
    "read_records",
    "resolve",
]

# The columns each kind's records carry, named after the link kinds (`person.ric` → `ric`).
COLUMNS: dict[str, tuple[str, ...]] = {
    "person": ("ric", "name", "birth_date", "sex", "phone", "address"),
    "enterprise": ("uscc", "name", "address", "legal_person_ric"),
}
PREFIX = {"person": "P", "enterprise": "E"}
IDENT = {"person": "ric", "enterprise": "uscc"}  # what a person or enterprise finds its file by
TRAIN_ROWS = 100_000  # the model is trained on at most this many records (a seeded sample)
MAX_NEW_REVIEWS = 5_000  # per run
_BATCH = 20_000

Progress = Callable[[str, int, int], None]  # step, done, total


def _quiet(step: str, done: int, total: int) -> None:
    return None


def _kind(kind: str) -> Kind:
    if kind not in COLUMNS:
        raise Invalid("kind must be person or enterprise", field="kind")
    return "person" if kind == "person" else "enterprise"


def linking_resources(session: Session, kind: str) -> list[tuple[Resource, TableSchema]]:
    """The published resources with data whose current schema links subjects of `kind`."""
    found = []
    resources = session.scalars(
        select(Resource)
        .where(Resource.status == ResourceStatus.PUBLISHED, Resource.lake_version.is_not(None))
        .order_by(Resource.code)
    )
    for resource in resources:
        schema = catalog.current_table_schema(session, resource)
        if schema is not None and schema.subject_kind == kind and schema.primary_key:
            found.append((resource, schema))
    return found


def read_records(
    session: Session,
    lake: Lake,
    actor: Principal,
    kind: str,
    *,
    progress: Progress = _quiet,
) -> pa.Table:
    """Every linking row of `kind` as `uid, resource, row_key, lake_version, <COLUMNS>`.

    Each resource is read through its access plan (`ingest.read_rows`), audited.
    """
    kind_ = _kind(kind)
    sources = linking_resources(session, kind_)
    parts = []
    for i, (resource, schema) in enumerate(sources):
        progress("read", i, len(sources))
        table = ingest.read_rows(session, lake, actor, resource.code)
        parts.append(_records(table, resource, schema, kind_))
    progress("read", len(sources), len(sources))
    if not parts:
        return _records(pa.table({"k": pa.array([], pa.string())}), None, None, kind_)
    return pa.concat_tables(parts)


def _records(
    table: pa.Table, resource: Resource | None, schema: TableSchema | None, kind: Kind
) -> pa.Table:
    n = table.num_rows
    code = resource.code if resource is not None else ""
    if schema is not None and schema.primary_key:
        keys = [pc.cast(table[k], pa.string()).combine_chunks() for k in schema.primary_key]
        row_key = keys[0] if len(keys) == 1 else pc.binary_join_element_wise(*keys, "|")
    else:
        row_key = pa.array([], pa.string())
    resource_col = pa.array([code] * n, pa.string())
    links = schema.links if schema is not None else {}
    out: dict[str, Any] = {
        "uid": pc.binary_join_element_wise(resource_col, row_key, "|"),
        "resource": resource_col,
        "row_key": row_key,
        "lake_version": pa.array([resource.lake_version if resource else 0] * n, pa.int64()),
    }
    for column in COLUMNS[kind]:
        name = links.get(f"{kind}.{column}")
        if name is None or name not in table.column_names:
            out[column] = pa.nulls(n, pa.string())
        elif column == "birth_date":
            out[column] = pc.cast(table[name], pa.string()).combine_chunks()
        else:
            out[column] = pc.cast(table[name], pa.string()).combine_chunks()
    return pa.table(out)


# --------------------------------------------------------------------------- the run


@dataclass
class _Previous:
    links: pa.Table  # uid, subject_id, row_hash

    @property
    def empty(self) -> bool:
        return bool(self.links.num_rows == 0)


def _previous(session: Session, kind: Kind) -> _Previous:
    rows = session.execute(
        select(
            SubjectLink.resource, SubjectLink.row_key, SubjectLink.subject_id, SubjectLink.row_hash
        ).where(SubjectLink.kind == kind)
    ).all()
    resource, row_key, subject, row_hash = (
        (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [])
    )
    uid = pc.binary_join_element_wise(
        pa.array(resource, pa.string()), pa.array(row_key, pa.string()), "|"
    )
    return _Previous(
        pa.table(
            {
                "uid": uid,
                "subject_id": pa.array(subject, pa.string()),
                "row_hash": pa.array(row_hash, pa.int64()),
            }
        )
    )


def current_model(session: Session, kind: str) -> SubjectModel | None:
    """The newest trained model of `kind`, or None."""
    return session.scalars(
        select(SubjectModel)
        .where(SubjectModel.kind == kind)
        .order_by(SubjectModel.id.desc())
        .limit(1)
    ).first()


def _model(
    session: Session, frame: pa.Table, kind: Kind, engine: Engine, retrain: bool
) -> linkage.Model:
    stored = None if retrain else current_model(session, kind)
    if stored is not None:
        return linkage.Model(kind, stored.settings)
    sample = frame
    if frame.num_rows > TRAIN_ROWS:
        step = frame.num_rows / TRAIN_ROWS
        sample = frame.take(pa.array([int(i * step) for i in range(TRAIN_ROWS)]))
    model = linkage.train(sample, kind, engine="duckdb")
    session.add(SubjectModel(kind=kind, settings=model.settings_json, trained_on=sample.num_rows))
    return model


def resolve(
    session: Session,
    lake: Lake,
    actor: Principal,
    *,
    kind: str = "person",
    engine: Engine = "duckdb",
    full: bool = False,
    retrain: bool = False,
    progress: Progress = _quiet,
) -> SubjectRun:
    """Link every linking row of `kind` to a subject with a stable id; one audited run."""
    kind_ = _kind(kind)
    timings: dict[str, float] = {}
    progress = _timed(progress, timings)
    if engine not in ("duckdb", "spark"):
        raise Invalid("engine must be duckdb or spark", field="engine")
    authorize(session, actor, "subjects.resolve", target=kind_, target_type="subjects")
    run = SubjectRun(kind=kind_, engine=engine, mode="full", stats={})
    session.add(run)
    session.flush()
    records = read_records(session, lake, actor, kind_, progress=progress)
    if records.num_rows == 0:  # no resource links this kind yet
        run.mode = "empty"
        run.finished_at = clock.now()
        run.stats = {"rows": 0, "resources": 0, "subjects": 0, "links_written": 0}
        audit.record(session, actor, "subjects.resolve", target=kind_, target_type="subjects",
                     count=0, detail=f"run {run.id}: no linking resource")  # fmt: skip
        return run
    progress("features", 0, 1)
    frame = linkage.features(records.select(["uid", *COLUMNS[kind_]]), kind_)
    hashes = linkage.row_hashes(records, COLUMNS[kind_])
    records = records.append_column("row_hash", hashes)
    ident = IDENT[kind_]
    records = records.append_column(
        "ident", linkage.ident_hashes(records[ident].combine_chunks(), reader_secret(session))
    )
    progress("features", 1, 1)
    previous = _previous(session, kind_)
    changed = _changed(records, previous.links)
    removed = previous.links.filter(
        pc.invert(pc.is_in(previous.links["uid"], value_set=records["uid"]))
    )
    if previous.empty or full or retrain or engine == "spark":
        progress("train", 0, 1)
        model = _model(session, frame, kind_, engine, retrain)
        progress("train", 1, 1)
        assigned, changes, pairs = _full(session, frame, previous, model, kind_, engine, progress)
        run.mode = "full"
    elif changed.num_rows == 0 and removed.num_rows == 0:
        run.mode = "unchanged"
        assigned, changes, pairs = previous.links.select(["uid", "subject_id"]), _no_changes(), None
    else:
        model = _model(session, frame, kind_, engine, False)
        assigned, changes, pairs = _incremental(
            session, frame, previous, changed, model, kind_, progress
        )
        run.mode = "incremental"
    del frame  # the features are done with: their memory goes before the links are written
    progress("write", 0, 1)
    written = _write_links(session, records, assigned, previous.links, kind_, run.id)
    if written:
        policies.bump_epoch(session)  # the data subjects' plans follow their links
    _record_changes(session, changes, run.id, actor)
    reviews = _queue_reviews(session, pairs, assigned, kind_) if pairs is not None else 0
    progress("write", 1, 1)
    run.finished_at = clock.now()
    run.stats = {
        "rows": records.num_rows,
        "resources": len(set(records["resource"].to_pylist()))
        if records.num_rows < 10_000
        else int(pc.count_distinct(records["resource"]).as_py()),
        "changed_rows": changed.num_rows,
        # The rows this run matched against the others: all of them in a full run, only the
        # new and changed ones in an incremental run, none when nothing changed.
        "linked_rows": records.num_rows
        if run.mode == "full"
        else (changed.num_rows if run.mode == "incremental" else 0),
        "removed_rows": removed.num_rows,
        "subjects": int(pc.count_distinct(assigned["subject_id"]).as_py())
        if assigned.num_rows
        else 0,
        "links_written": written,
        "reviews": reviews,
        **{k: int(v) for k, v in _change_counts(changes).items()},
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    audit.record(
        session, actor, "subjects.resolve", target=kind_, target_type="subjects",
        count=records.num_rows, detail=f"run {run.id} {run.mode} on {engine}: {run.stats}",
    )  # fmt: skip
    return run


def _timed(progress: Progress, timings: dict[str, float]) -> Progress:
    """`progress`, also noting each step's seconds in `timings` (the run's stats keep them)."""
    started: dict[str, float] = {}

    def step(name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        started.setdefault(name, now)
        timings[name] = now - started[name]
        progress(name, done, total)

    return step


def _changed(records: pa.Table, previous: pa.Table) -> pa.Table:
    """The rows that are new or whose linking fields changed since the last run."""
    joined = records.select(["uid", "row_hash"]).join(
        previous.select(["uid", "row_hash"]).rename_columns(["uid", "old_hash"]),
        "uid",
        join_type="left outer",
    )
    mask = pc.or_kleene(
        pc.is_null(joined["old_hash"]), pc.not_equal(joined["row_hash"], joined["old_hash"])
    )
    return joined.filter(pc.fill_null(mask, True)).select(["uid"])


def _no_changes() -> pa.Table:
    return pa.table(
        {"kind": pa.array([], pa.string()), "subject_id": pa.array([], pa.string()),
         "other_id": pa.array([], pa.string()), "rows": pa.array([], pa.int64())}
    )  # fmt: skip


def _full(
    session: Session, frame: pa.Table, previous: _Previous, model: linkage.Model,
    kind: Kind, engine: Engine, progress: Progress,
) -> tuple[pa.Table, pa.Table, pa.Table]:  # fmt: skip
    progress("link", 0, 1)
    scored = linkage.pairwise_scores(frame, model, engine=engine)
    progress("link", 1, 1)
    clusters = _apply_decisions(session, scored.clusters, kind)
    assigned, changes = linkage.assign_ids(
        clusters,
        previous.links,
        prefix=PREFIX[kind],
        next_number=reviews.next_number(session, kind),
    )
    return assigned, changes, scored.pairs


def _apply_decisions(session: Session, clusters: pa.Table, kind: Kind) -> pa.Table:
    """Steward decisions replayed on fresh clusters: confirmed pairs together, split apart."""
    decided = session.execute(
        select(SubjectReview.left_uid, SubjectReview.right_uid, SubjectReview.status)
        .where(SubjectReview.kind == kind, SubjectReview.status != ReviewStatus.OPEN)
        .order_by(SubjectReview.decided_at)
    ).all()
    if not decided:
        return clusters
    clusters = clusters.select(["uid", "cluster_id"]).cast(
        pa.schema([("uid", pa.string()), ("cluster_id", pa.string())])
    )
    cluster_of = dict(
        zip(clusters["uid"].to_pylist(), clusters["cluster_id"].to_pylist(), strict=True)
    )
    for left, right, status in decided:
        if left not in cluster_of or right not in cluster_of:
            continue
        if status == ReviewStatus.CONFIRMED and cluster_of[left] != cluster_of[right]:
            old = cluster_of[right]
            for uid, c in cluster_of.items():
                if c == old:
                    cluster_of[uid] = cluster_of[left]
        elif status == ReviewStatus.SPLIT and cluster_of[left] == cluster_of[right]:
            cluster_of[right] = f"split:{right}"
    return pa.table({"uid": list(cluster_of), "cluster_id": list(cluster_of.values())})


def _incremental(
    session: Session, frame: pa.Table, previous: _Previous, changed: pa.Table,
    model: linkage.Model, kind: Kind, progress: Progress,
) -> tuple[pa.Table, pa.Table, pa.Table]:  # fmt: skip
    """New and changed rows linked against all rows; other rows keep their subject.

    Only the subjects a strong pair reaches, and those a changed row belonged to, are
    re-clustered (each previous subject's unchanged rows counting as one node); every other
    row keeps its id. A changed row that no longer belongs with its subject leaves it: to the
    subject it now matches or a new one, recorded as a split of its old subject.
    """
    progress("link", 0, 1)
    new_uids = changed["uid"].combine_chunks()
    pairs = linkage.match_new(frame, new_uids, model)
    progress("link", 1, 1)
    current = previous.links.filter(pc.is_in(previous.links["uid"], value_set=frame["uid"]))
    current = current.select(["uid", "subject_id"])
    is_new = pc.is_in(current["uid"], value_set=new_uids)
    kept = current.filter(pc.invert(is_new))
    moved = current.filter(is_new)  # changed rows, with the subject they had
    strong = pairs.filter(pc.greater_equal(pairs["match_probability"], linkage.LINK_THRESHOLD))
    ends = pa.concat_arrays([strong["uid_l"].combine_chunks(), strong["uid_r"].combine_chunks()])
    touched = pa.concat_arrays(
        [
            kept.filter(pc.is_in(kept["uid"], value_set=ends))["subject_id"].combine_chunks(),
            moved["subject_id"].combine_chunks(),
        ]
    ).unique()
    involved = kept.filter(pc.is_in(kept["subject_id"], value_set=touched))
    untouched = kept.filter(pc.invert(pc.is_in(kept["subject_id"], value_set=touched)))
    subject_of = dict(
        zip(involved["uid"].to_pylist(), involved["subject_id"].to_pylist(), strict=True)
    )
    apart = session.execute(
        select(SubjectReview.left_uid, SubjectReview.right_uid).where(
            SubjectReview.kind == kind, SubjectReview.status == ReviewStatus.SPLIT
        )
    ).all()
    clusters = _components(
        strong,
        subject_of,
        [*subject_of, *new_uids.to_pylist()],
        apart=[(str(a), str(b)) for a, b in apart],
    )
    assigned, changes = linkage.assign_ids(
        clusters,
        pa.concat_tables([involved, moved]),
        prefix=PREFIX[kind],
        next_number=reviews.next_number(session, kind),
    )
    return pa.concat_tables([untouched, assigned.select(["uid", "subject_id"])]), changes, pairs


def _components(
    strong: pa.Table,
    subject_of: dict[str, str],
    uids: list[str],
    *,
    apart: Sequence[tuple[str, str]] = (),
) -> pa.Table:
    """Connected components of the strong pairs, a previous subject's rows counting as one.

    Pairs are joined most likely first, and never so that two rows a steward split (`apart`)
    end up in one component: a new row matching both sides joins the likelier one.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    def node(uid: str) -> str:
        return f"s:{subject_of[uid]}" if uid in subject_of else f"r:{uid}"

    kept_apart = [(node(a), node(b)) for a, b in apart]
    ordered = strong.sort_by([("match_probability", "descending")])
    for left, right in zip(ordered["uid_l"].to_pylist(), ordered["uid_r"].to_pylist(), strict=True):
        a, b = find(node(left)), find(node(right))
        if a == b or any({find(x), find(y)} == {a, b} for x, y in kept_apart):
            continue
        parent[max(a, b)] = min(a, b)
    return pa.table(
        {"uid": pa.array(uids, pa.string()), "cluster_id": [find(node(u)) for u in uids]}
    )


def _write_links(
    session: Session,
    records: pa.Table,
    assigned: pa.Table,
    previous: pa.Table,
    kind: Kind,
    run_id: int,
) -> int:
    """Write the rows whose subject or linking fields changed; drop the rows that are gone."""
    rows = records.select(["uid", "resource", "row_key", "row_hash", "lake_version", "ident"]).join(
        assigned.select(["uid", "subject_id"]), "uid"
    )
    old = previous.rename_columns(["uid", "old_subject", "old_hash"])
    joined = rows.join(old, "uid", join_type="left outer")
    same = pc.and_(
        pc.equal(joined["subject_id"], joined["old_subject"]),
        pc.equal(joined["row_hash"], joined["old_hash"]),
    )
    to_write = joined.filter(pc.invert(pc.fill_null(same, False)))
    gone = previous.filter(pc.invert(pc.is_in(previous["uid"], value_set=rows["uid"])))
    stale = pc.is_in(previous["uid"], value_set=to_write["uid"])
    for uids in _chunks(
        pa.concat_arrays(
            [gone["uid"].combine_chunks(), previous.filter(stale)["uid"].combine_chunks()]
        )
    ):
        pairs = [u.split("|", 1) for u in uids]
        for resource in {p[0] for p in pairs}:
            keys = [p[1] for p in pairs if p[0] == resource]
            session.execute(
                delete(SubjectLink).where(
                    SubjectLink.resource == resource, SubjectLink.row_key.in_(keys)
                )
            )
    _insert_links(session, to_write, kind, run_id)
    return int(to_write.num_rows)


_LINK_COLUMNS = (
    "kind",
    "resource",
    "row_key",
    "subject_id",
    "row_hash",
    "lake_version",
    "ident",
    "run_id",
)


#: Rows from which a write into SQLite drops the links' secondary indexes and builds them
#: again after it (a first resolution: millions of rows).
_REINDEX_FROM = 200_000


def _insert_links(session: Session, rows: pa.Table, kind: Kind, run_id: int) -> None:
    """Insert link rows in batches through the driver's executemany (millions on a first run).

    On SQLite a large write goes in without the secondary indexes (subject, kind, identity
    hash), which are built again at its end, inside the same transaction: sorting each index
    once is about 2.5 times faster than inserting millions of random keys into it (decision
    0016); a failed write rolls the drop back with the rest. PostgreSQL keeps its indexes:
    dropping them would lock the table against readers for the whole run."""
    connection = session.connection()
    reindex = connection.dialect.name == "sqlite" and rows.num_rows >= _REINDEX_FROM
    indexes = sorted(cast(Table, SubjectLink.__table__).indexes, key=lambda i: str(i.name))
    if reindex:
        for index in indexes:
            index.drop(connection)
    _insert_rows(connection, rows, kind, run_id)
    if reindex:
        for index in indexes:
            index.create(connection)


def _insert_rows(connection: Connection, rows: pa.Table, kind: Kind, run_id: int) -> None:
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO subject_links ({', '.join(_LINK_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(_LINK_COLUMNS))})"
    )
    for start in range(0, rows.num_rows, _BATCH):
        part = rows.slice(start, _BATCH)
        n = part.num_rows
        values = list(
            zip(
                [kind] * n, part["resource"].to_pylist(), part["row_key"].to_pylist(),
                part["subject_id"].to_pylist(), part["row_hash"].to_pylist(),
                part["lake_version"].to_pylist(), part["ident"].to_pylist(), [run_id] * n,
                strict=True,
            )
        )  # fmt: skip
        connection.exec_driver_sql(sql, values)


def _chunks(values: pa.Array) -> Iterator[list[str]]:
    for start in range(0, len(values), 1000):
        yield values.slice(start, 1000).to_pylist()


def _record_changes(
    session: Session, changes: pa.Table, run_id: int | None, actor: Principal
) -> None:
    """Merges, splits and growth, one row each; creations are counted in the run's stats."""
    changes = changes.filter(pc.not_equal(changes["kind"], ChangeKind.CREATED.value))
    if changes.num_rows == 0:
        return
    session.execute(
        insert(SubjectChange),
        [
            {"run_id": run_id, "kind": c["kind"], "subject_id": c["subject_id"],
             "other_id": c["other_id"], "rows": int(c["rows"]), "by": actor.label, "at": clock.now()}
            for c in changes.to_pylist()
        ],
    )  # fmt: skip


def _change_counts(changes: pa.Table) -> dict[str, int]:
    counts = {str(k): 0 for k in ChangeKind}
    for kind in changes["kind"].to_pylist():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _queue_reviews(session: Session, pairs: pa.Table, assigned: pa.Table, kind: Kind) -> int:
    """Uncertain pairs (between the thresholds) of two different subjects, not yet queued."""
    uncertain = pairs.filter(pc.less(pairs["match_probability"], linkage.LINK_THRESHOLD))
    if uncertain.num_rows == 0:
        return 0
    ids = assigned.select(["uid", "subject_id"])
    joined = uncertain.join(ids.rename_columns(["uid_l", "subject_l"]), "uid_l").join(
        ids.rename_columns(["uid_r", "subject_r"]), "uid_r"
    )
    joined = joined.filter(pc.not_equal(joined["subject_l"], joined["subject_r"]))
    joined = joined.sort_by([("match_probability", "descending")]).slice(0, MAX_NEW_REVIEWS)
    known = {
        (a, b)
        for a, b in session.execute(
            select(SubjectReview.left_uid, SubjectReview.right_uid).where(
                SubjectReview.kind == kind
            )
        )
    }
    fresh = [
        {"kind": kind, "left_uid": min(a, b), "right_uid": max(a, b), "match_probability": float(p),
         "match_weight": float(w), "status": ReviewStatus.OPEN, "created_at": clock.now()}
        for a, b, p, w in zip(
            joined["uid_l"].to_pylist(), joined["uid_r"].to_pylist(),
            joined["match_probability"].to_pylist(), joined["match_weight"].to_pylist(), strict=True,
        )
        if (min(a, b), max(a, b)) not in known
    ]  # fmt: skip
    if fresh:
        session.execute(insert(SubjectReview), fresh)
    return len(fresh)


# --------------------------------------------------------------------------- links and reviews


def links_table(session: Session, actor: Principal, *, kind: str | None = None) -> pa.Table:
    """One line per linked source row: `resource, row_key, subject_id` (audited)."""
    authorize(session, actor, "subjects.resolve", target=kind or "all", target_type="subjects")
    query = select(SubjectLink.resource, SubjectLink.row_key, SubjectLink.subject_id).order_by(
        SubjectLink.resource, SubjectLink.row_key
    )
    if kind is not None:
        query = query.where(SubjectLink.kind == _kind(kind))
    rows = session.execute(query).all()
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [(), (), ()]
    table = pa.table(
        {
            name: pa.array(list(values), pa.string())
            for name, values in zip(("resource", "row_key", "subject_id"), cols, strict=True)
        }
    )
    audit.record_read(
        session,
        actor,
        "subjects.links",
        target=kind or "all",
        target_type="subjects",
        count=table.num_rows,
    )
    return table


def explain_pair(
    session: Session, lake: Lake, actor: Principal, left_uid: str, right_uid: str
) -> list[dict[str, Any]]:
    """Each comparison's level and match weight for two linked rows (`resource|row_key`),
    read through the actor's access plans."""
    from minyun.query import service as query
    from minyun.subjects.files import _key_filter

    authorize(session, actor, "subjects.review", target=left_uid, target_type="subject_pair")
    rows = []
    kind: Kind | None = None
    for uid in (left_uid, right_uid):
        code, _, key = uid.partition("|")
        resource = catalog.get_resource(session, code)
        schema = catalog.current_table_schema(session, resource)
        if schema is None or schema.subject_kind is None or not schema.primary_key:
            raise Invalid(f"{code} has no linking fields", field="uid")
        kind = _kind(schema.subject_kind)
        page = query.query_rows(
            session, lake, actor, code, purpose="subject pair review", limit=1,
            filter=_key_filter(list(schema.primary_key), [key.split("|")]),
        )  # fmt: skip
        if page.table.num_rows == 0:
            raise NotFound(f"no row {uid}")
        record = _records(page.table, resource, schema, kind).to_pylist()[0]
        rows.append(record)
    if kind is None:
        raise Invalid("two rows are needed", field="uid")
    stored = current_model(session, kind)
    if stored is None:
        raise NotFound(f"no trained {kind} model yet: run minyun subjects resolve")
    return linkage.explain(linkage.Model(kind, stored.settings), rows[0], rows[1])
