"""The synthetic demo province: departments, demo accounts, persons and enterprises.

Everything is deterministic for a seed, so two machines build the same province.
Loading is a job (`demo.load`): it saves a resume point after each stage and each
file part, so an interrupted load picks up where it stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import AccountKind, User
from minyun.core import identifiers, jobs
from minyun.core.errors import Invalid
from minyun.core.security import Principal, Role, new_secret
from minyun.orgs import service as orgs
from minyun.orgs.models import Division, Organization, OrgKind

if TYPE_CHECKING:
    from minyun.apps.ecocloud.ingest import IngestReport

SYSTEM = Principal.system(on_behalf_of="demo")
PROVINCE = "350000"
PART_ROWS = 1_000_000

# (code, name, short) of the provincial departments; each also exists in every city
# where `city` is true.
PROVINCIAL_DEPARTMENTS: list[tuple[str, str, bool]] = [
    ("fj-bigdata", "福建省大数据管理局", True),
    ("fj-drc", "福建省发展和改革委员会", False),
    ("fj-police", "福建省公安厅", False),
    ("fj-civil", "福建省民政厅", False),
    ("fj-finance", "福建省财政厅", False),
    ("fj-hrss", "福建省人力资源和社会保障厅", False),
    ("fj-nature", "福建省自然资源厅", False),
    ("fj-eco", "福建省生态环境厅", True),
    ("fj-housing", "福建省住房和城乡建设厅", False),
    ("fj-transport", "福建省交通运输厅", False),
    ("fj-agri", "福建省农业农村厅", False),
    ("fj-commerce", "福建省商务厅", False),
    ("fj-health", "福建省卫生健康委员会", False),
    ("fj-education", "福建省教育厅", False),
    ("fj-amr", "福建省市场监督管理局", True),
    ("fj-tax", "国家税务总局福建省税务局", False),
    ("fj-stats", "福建省统计局", False),
    ("fj-rural", "福建省乡村振兴局", False),
    ("fj-customs", "福州海关", False),
    ("fj-pboc", "中国人民银行福建省分行", False),
    ("fj-gov-service", "福建省行政服务中心管理委员会", False),
]
CITY_SUFFIX = {"fj-bigdata": "大数据管理局", "fj-eco": "生态环境局", "fj-amr": "市场监督管理局"}

# username, display name, organisation code, roles
STAFF_ACCOUNTS: list[tuple[str, str, str, list[str]]] = [
    ("admin", "系统管理员", "fj-bigdata", [Role.ADMIN]),
    ("steward", "市场监管数据专员", "fj-amr", [Role.STEWARD]),
    ("approver", "公安厅审批员", "fj-police", [Role.APPROVER]),
    ("consumer", "人社厅数据使用员", "fj-hrss", [Role.CONSUMER]),
    ("auditor", "大数据局审计员", "fj-bigdata", [Role.AUDITOR]),
    # The officers on duty at two cities' environment bureaus: they run their city's stations
    # (ingest their readings, apps.ecocloud.operators) and answer its alerts.
    ("eco-fuzhou", "福州市生态环境局值班员", "fz-eco", [Role.OPERATOR, Role.CONSUMER]),
    ("eco-zhangzhou", "漳州市生态环境局值班员", "zz-eco", [Role.OPERATOR, Role.CONSUMER]),
]
#: The demo day (2022-01-04) was a day of 良 air: no city had 3 stations above AQI 100 for 3
#: hours, so the production rule opens no alert. The demo detects episodes above 75 instead
#: (unless MINYUN_ECO_EPISODE_AQI says otherwise): from the real readings Zhangzhou's morning
#: (with Longyan at 10:00) opens one alert, routed to 漳州市 and 龙岩市生态环境局, and Sanming's
#: evening another; each alert records its threshold.
DEMO_EPISODE_AQI = "75"


@dataclass(frozen=True)
class DemoAccount:
    username: str
    password: str
    display_name: str
    roles: list[str]
    organization: str | None


def accounts_file(var_dir: Path) -> Path:
    return var_dir / "demo-accounts.json"


def read_accounts(var_dir: Path) -> list[DemoAccount]:
    """The demo accounts made on this machine (passwords are generated, never committed)."""
    path = accounts_file(var_dir)
    if not path.exists():
        return []
    return [DemoAccount(**a) for a in json.loads(path.read_text("utf-8"))]


def _uscc_for(n: int, region: str) -> str:
    # 11: 机关 (government organ) registered by the staffing office (机构编制).
    return identifiers.make_uscc("1", "1", region, f"{n:08d}")


def load_departments(session: Session) -> int:
    """The provincial departments and the big-data, ecology and market bureaus of each city."""
    orgs.load_divisions(session, orgs.packaged_divisions())
    existing = set(session.scalars(select(Organization.code)))
    cities = list(
        session.scalars(select(Division).where(Division.level == "city").order_by(Division.code))
    )
    added = 0
    for n, (code, name, _) in enumerate(PROVINCIAL_DEPARTMENTS, start=1):
        if code not in existing:
            orgs.create_organization(
                session,
                SYSTEM,
                code=code,
                name=name,
                uscc=_uscc_for(10000 + n, PROVINCE),
                division_code=PROVINCE,
            )
            added += 1
    for c, city in enumerate(cities, start=1):
        prefix = _city_prefix(city.code)
        for d, (dept, suffix) in enumerate(CITY_SUFFIX.items(), start=1):
            code = f"{prefix}-{dept.removeprefix('fj-')}"
            if code in existing:
                continue
            parent = orgs.get_organization(session, dept)
            orgs.create_organization(
                session,
                SYSTEM,
                code=code,
                name=f"{city.name}{suffix}",
                uscc=_uscc_for(20000 + c * 10 + d, city.code),
                division_code=city.code,
                kind=OrgKind.UNIT,
                parent_id=parent.id,
            )
            added += 1
    return added


CITY_PREFIX = {
    "350100": "fz", "350200": "xm", "350300": "pt", "350400": "sm", "350500": "qz",
    "350600": "zz", "350700": "np", "350800": "ly", "350900": "nd",
}  # fmt: skip


def _city_prefix(code: str) -> str:
    return CITY_PREFIX.get(code, f"c{code[:4]}")


def load_accounts(session: Session, var_dir: Path) -> list[DemoAccount]:
    """Demo accounts for each role, with passwords generated on this machine."""
    known = {a.username: a for a in read_accounts(var_dir)}
    made: list[DemoAccount] = []
    for username, display, org_code, roles in STAFF_ACCOUNTS:
        stored = known.get(username)
        password = stored.password if stored else new_secret(9)
        account = DemoAccount(username, password, display, sorted(map(str, roles)), org_code)
        user = session.scalars(select(User).where(User.username == username)).first()
        if user is None:
            org = orgs.get_organization(session, org_code)
            accounts.create_user(
                session, SYSTEM, username=username, password=account.password,
                display_name=display, organization_id=org.id, roles=list(roles),
            )  # fmt: skip
        elif sorted(user.roles) != account.roles:
            # A demo made before a role changed here (eco-fuzhou: steward → operator).
            accounts.set_roles(session, SYSTEM, user.id, account.roles)
        made.append(account)
    citizen_ric = identifiers.make_ric("350102", dt.date(1990, 5, 17), 123)
    enterprise_uscc = identifiers.make_uscc("9", "1", "350100", "MA2Y7K3C")
    for username, display, kind, ric, uscc in (
        ("citizen", "林小闽", AccountKind.CITIZEN, citizen_ric, None),
        ("enterprise", "福州闽云示范科技有限公司", AccountKind.ENTERPRISE, None, enterprise_uscc),
    ):
        account = known.get(username) or DemoAccount(username, new_secret(9), display, [], None)
        if session.scalars(select(User.id).where(User.username == username)).first() is None:
            accounts.create_user(
                session, SYSTEM, username=username, password=account.password,
                display_name=display, kind=kind, ric=ric, uscc=uscc,
            )  # fmt: skip
        made.append(account)
    path = accounts_file(var_dir)
    path.touch(mode=0o600)
    path.write_text(json.dumps([a.__dict__ for a in made], ensure_ascii=False, indent=2), "utf-8")
    return made


def population_dir(lake_uri: str) -> Path:
    return Path(lake_uri) / "demo"


@jobs.handler("demo.load")
def load_province(ctx: jobs.JobContext) -> dict[str, Any]:
    """Build the demo province: stages committed one by one, files written part by part."""
    from minyun.demo import population

    var_dir = Path(ctx.params["var_dir"])
    lake = population_dir(ctx.params["lake_uri"])
    n_persons = int(ctx.params["persons"])
    n_enterprises = int(ctx.params["enterprises"])
    if n_enterprises and not n_persons:
        raise Invalid("enterprises need persons to be their legal representatives", field="persons")
    seed = int(ctx.params.get("seed", 2026))
    state = dict(ctx.resume or {})
    total = n_persons + n_enterprises + 2
    if not state.get("control_plane"):
        with ctx.factory.begin() as session:
            departments = load_departments(session)
            load_accounts(session, var_dir)
        state["control_plane"] = True
        state["departments"] = departments
        ctx.save_point(state)
    ctx.progress(2, total, "departments and accounts")
    if not state.get("market") and ctx.params.get("market", True):
        from minyun.demo import market

        with ctx.factory.begin() as session:  # registrations and their events (一照一码)
            state["market"] = market.demo_story(session)
        ctx.save_point(state)
    if not state.get("resources") and ctx.params.get("resources", True):
        from minyun.demo import resources

        resources.publish_resources(ctx, state, folder=lake / "resources", seed=seed)
    if state.get("resources") and not state.get("sharing"):
        from minyun.demo import sharing

        with ctx.factory.begin() as session:  # a consumer applies, an approver approves
            state["sharing"] = sharing.demo_sharing(session)
        ctx.save_point(state)
    if state.get("sharing") and not state.get("batch"):
        from minyun.demo import sharing

        with ctx.factory.begin() as session:  # its standing order: a batch file, delivered
            state["batch"] = sharing.demo_batch(
                session, var_dir=var_dir, lake_uri=ctx.params["lake_uri"]
            )
        ctx.save_point(state)
    if not state.get("opendata") and ctx.params.get("opendata", True):
        from minyun.core.lake import Lake
        from minyun.opendata import demo as open_demo

        with ctx.factory.begin() as session:
            state["opendata"] = open_demo.load(
                session, Lake(ctx.params["lake_uri"]), seed=seed,
                big_rows=int(ctx.params.get("open_big_rows", 20_000)),
            )  # fmt: skip
        ctx.save_point(state)
        ctx.progress(2, None, f"open datasets: {state['opendata']}")
    if not state.get("licences") and ctx.params.get("resources", True):
        from minyun.core.config import load_settings
        from minyun.core.lake import Lake
        from minyun.licences import demo as licences_demo

        settings = load_settings(var_dir=var_dir, lake_uri=ctx.params["lake_uri"])
        state["licences"] = licences_demo.load(
            ctx.factory, Lake(ctx.params["lake_uri"]), lake / "licences", settings, seed=seed
        )
        ctx.save_point(state)
    if not state.get("subjects") and ctx.params.get("resources", True):
        from minyun.demo import subjects  # after the licences' holder rows

        state["subjects"] = subjects.resolve(ctx, seed=seed)
        ctx.save_point(state)
    if not state.get("air") and ctx.params.get("air", True):
        state["air"] = load_air_quality(ctx)
        ctx.save_point(state)
    if not state.get("grid") and ctx.params.get("grid", True):
        from minyun.apps.grid import demo as grid_demo  # Gulou's grids (apps.grid)

        with ctx.factory.begin() as session:
            grid_demo.load(session, var_dir, lake_uri=ctx.params["lake_uri"])
        state["grid"] = True
    if not state.get("food") and ctx.params.get("food", True):
        state["food"] = load_food_chain(ctx)
        ctx.save_point(state)
    batch = min(100_000, PART_ROWS)
    persons = _write_parts(
        ctx, state, "persons", lake / "persons", n_persons, offset=2, total=total,
        batches=lambda start: population.iter_persons(
            n_persons, seed=seed, batch_size=batch, start=start
        ),
    )  # fmt: skip
    enterprises = _write_parts(
        ctx, state, "enterprises", lake / "enterprises", n_enterprises, offset=2 + n_persons,
        total=total,
        batches=lambda start: population.iter_enterprises(
            n_enterprises, seed=seed, n_persons=n_persons, batch_size=batch, start=start
        ),
    )  # fmt: skip
    return {
        "persons": persons, "enterprises": enterprises, "lake": str(lake),
        "subjects": state.get("subjects"),
    }  # fmt: skip


def ingest_air_day(session: Session) -> IngestReport:
    """The real day of Fujian's stations into the eco-cloud, detected with the demo threshold."""
    from minyun.apps.ecocloud import ingest as eco
    from minyun.apps.ecocloud.cnemc import SAMPLE_DAY, cnemc_files, read_cnemc
    from minyun.apps.ecocloud.detect import Rules

    rows = eco.rows_from_cnemc(read_cnemc(cnemc_files(SAMPLE_DAY)))
    rules = Rules.from_env({"MINYUN_ECO_EPISODE_AQI": DEMO_EPISODE_AQI, **os.environ})
    return eco.ingest_readings(session, SYSTEM, rows, rules=rules)


def load_food_chain(ctx: jobs.JobContext) -> int:
    """A farm-to-table tea chain (apps.food.sample) captured for the market regulator, so the
    supervision pages and a product page (`/01/06901234543216/10/T1`) have something to show."""
    from minyun.apps.food import sample
    from minyun.apps.food import service as food
    from minyun.core.lake import Lake

    lake = Lake(ctx.params["lake_uri"])
    with ctx.factory.begin() as session:
        org = session.scalars(select(Organization.id).where(Organization.code == "fj-amr")).first()
        actor = Principal(kind="system", name="minyun", organization_id=org, on_behalf_of="demo")
        job = food.capture(session, actor, lake, sample.chain())
        return job.event_count if job.success else 0


def load_air_quality(ctx: jobs.JobContext) -> int:
    """The real day of Fujian's stations into the eco-cloud, then into its lake resources."""
    from minyun.apps.ecocloud import lake as eco_lake
    from minyun.core.config import load_settings

    with ctx.factory.begin() as session:
        report = ingest_air_day(session)
        missing = eco_lake.provider_missing(session)
    if missing is None:
        settings = load_settings(
            var_dir=Path(ctx.params["var_dir"]), lake_uri=ctx.params["lake_uri"]
        )
        eco_lake.publish_now(ctx.factory, SYSTEM, settings=settings)
    return report.received


def _write_parts(
    ctx: jobs.JobContext,
    state: dict[str, Any],
    name: str,
    folder: Path,
    n: int,
    *,
    offset: int,
    total: int,
    batches: Callable[[int], Iterator[pa.RecordBatch]],
) -> int:
    """Stream rows into Parquet parts of PART_ROWS rows; on resume, start after the last part."""
    folder.mkdir(parents=True, exist_ok=True)
    done_parts = int(state.get(f"{name}_parts", 0))
    if done_parts == 0:
        for stale in folder.glob("part-*.parquet"):
            stale.unlink()
    written = min(n, done_parts * PART_ROWS)
    if written >= n:
        return n
    part, part_rows = done_parts, 0
    writer: pq.ParquetWriter | None = None
    tmp = folder / f".part-{part:05d}.parquet.tmp"
    for batch in batches(written):
        if writer is None:
            tmp = folder / f".part-{part:05d}.parquet.tmp"
            writer = pq.ParquetWriter(tmp, batch.schema, compression="zstd")
        writer.write_batch(batch)
        written += batch.num_rows
        part_rows += batch.num_rows
        if part_rows >= PART_ROWS:
            _close_part(writer, tmp, folder, part)
            writer, part, part_rows = None, part + 1, 0
            state[f"{name}_parts"] = part
            ctx.save_point(state)
        ctx.progress(offset + written, total, f"{name}: {written:,} / {n:,}")
    if writer is not None:
        _close_part(writer, tmp, folder, part)
        state[f"{name}_parts"] = part + 1
        ctx.save_point(state)
    return written


def _close_part(writer: pq.ParquetWriter, tmp: Path, folder: Path, part: int) -> None:
    # Written under a temporary name and renamed: a reader never sees half a part.
    writer.close()
    os.replace(tmp, folder / f"part-{part:05d}.parquet")
