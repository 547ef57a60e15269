"""The demo's grid governance: Gulou set up, a grid worker and department officers, a few
reports (one already resolved) so the map and the statistics have something to show."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minyun.accounts import service as accounts
from minyun.accounts.models import User
from minyun.apps.grid import service
from minyun.apps.grid.models import Report
from minyun.apps.grid.photos import PhotoStore
from minyun.apps.grid.service import NewReport
from minyun.core.security import Principal, new_secret
from minyun.orgs.models import Organization

SYSTEM = Principal.system(on_behalf_of="demo")
# username, display name, organisation code, grids on duty
ACCOUNTS: list[tuple[str, str, str, list[str]]] = [
    ("wangge", "东街街道网格员", "gl-st-004", ["35010200400101", "35010200400102"]),
    ("jiedao", "东街街道办事处值班员", "gl-st-004", []),
    ("jiaojing", "鼓楼交警大队值班员", "gl-traffic", []),
    ("xiaofang", "鼓楼消防救援大队值班员", "gl-fire", []),
    ("fangguan", "鼓楼区住建局（房管）值班员", "gl-housing", []),
    ("chengguan", "鼓楼区城管局值班员", "gl-urban", []),
]
# service, description, lat, long, attributes
REPORTS = [
    ("fire-lane", "小区消防通道被私家车堵住", 26.0853, 119.3006, {"BLOCKING": ["full"]}),
    ("garbage", "巷口建筑垃圾堆放多日", 26.0975, 119.3050, {}),
    ("road-damage", "人行道井盖松动", 26.0830, 119.2920, {"COVER": ["yes"]}),
]


def photo(text: str) -> bytes:
    """A plain demo photo (a coloured card with a label)."""
    image = Image.new("RGB", (800, 600), (196, 92, 60))
    ImageDraw.Draw(image).text((40, 40), text, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def load(session: Session, var_dir: Path, *, lake_uri: str) -> int:
    """Set up Gulou, the demo's grid accounts (added to demo-accounts.json) and its reports."""
    from minyun.demo.province import DemoAccount, accounts_file, read_accounts

    service.load_gulou(session, SYSTEM)
    known = {a.username: a for a in read_accounts(var_dir)}
    for username, display, org_code, grids in ACCOUNTS:
        org = session.scalars(select(Organization).where(Organization.code == org_code)).one()
        account = known.get(username) or DemoAccount(username, new_secret(9), display, [], org_code)
        user = session.scalars(select(User).where(User.username == username)).first()
        if user is None:
            user = accounts.create_user(session, SYSTEM, username=username,
                                        password=account.password, display_name=display,
                                        organization_id=org.id, roles=[])  # fmt: skip
        for grid in grids:
            service.assign_worker(session, SYSTEM, grid, user.id)
        known[username] = account
    path = accounts_file(var_dir)
    path.touch(mode=0o600)
    path.write_text(json.dumps([asdict(a) for a in known.values()], ensure_ascii=False, indent=2),
                    "utf-8")  # fmt: skip
    if session.scalar(select(func.count()).select_from(Report)):
        return 0
    worker = session.scalars(select(User).where(User.username == "wangge")).one()
    actor = accounts.principal_for(worker)
    store = PhotoStore(lake_uri)
    made = [service.file_report(session, actor, store, NewReport(
        code, text, lat, long, attributes=attributes, photos=[photo(code)]))
        for code, text, lat, long, attributes in REPORTS]  # fmt: skip
    urban = session.scalars(select(User).where(User.username == "chengguan")).one()
    officer = accounts.principal_for(urban)
    task = made[1].tasks[0]
    service.accept_task(session, officer, task.id)
    service.close_task(session, officer, store, task.id, note="已清运", photo=photo("done"))
    return len(made)
