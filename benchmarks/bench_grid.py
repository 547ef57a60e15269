"""Benchmark: Open311 reports accepted per second, each with a photo made into a thumbnail.

A node on a throwaway var folder (SQLite, the embedded default) serves the app with uvicorn;
CLIENTS threads post Open311 `requests.json` with a 1600×1200 JPEG carrying an EXIF GPS
position, as a phone sends it. Each accepted report is checked, stripped, thumbnailed,
placed in its grid, routed to its departments (tasks, timeline, events, audit) and
committed before its answer. The baseline, measured in the same run, is Pillow alone doing
the same photo work (decode, strip, re-encode, thumbnail) in one thread: the ratio says how
much of a report's cost is the photo.

MINYUN_BENCH_GRID_REPORTS sets how many reports (default 400; 20 for a quick check).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from minyun.apps.grid import apikeys, photos, service
from minyun.core.config import load_settings
from minyun.core.platform import Platform
from minyun.core.security import Principal

REPORTS = int(os.environ.get("MINYUN_BENCH_GRID_REPORTS", "400"))
CLIENTS = 8
DONGJIEKOU = (26.0853, 119.3006)


def phone_photo(gps: tuple[float, float] = DONGJIEKOU) -> bytes:
    """A 1600×1200 JPEG with camera tags and an EXIF GPS position."""
    image = Image.effect_noise((1600, 1200), 60).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "BenchCam"

    def dms(value: float) -> tuple[float, float, float]:
        d = int(value)
        m = int((value - d) * 60)
        return (float(d), float(m), round(((value - d) * 60 - m) * 60, 4))

    exif.get_ifd(0x8825).update({1: "N", 2: dms(gps[0]), 3: "E", 4: dms(gps[1])})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def photo_baseline(photo: bytes, count: int) -> float:
    """Photos per second through Pillow alone (the same checks, strip and thumbnail)."""
    started = time.perf_counter()
    for _ in range(count):
        photos.process(photo)
    return count / (time.perf_counter() - started)


def _serve(platform: Platform) -> tuple[str, threading.Thread, object]:
    import socket

    import uvicorn

    from minyun.web.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(platform), host="127.0.0.1", port=port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    return base, thread, server


def run() -> dict[str, float]:
    photo = phone_photo()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(var_dir=Path(tmp) / "var", rate_limit_uri="memory://")
        platform = Platform.open(settings)
        platform.migrate()
        with platform.factory.begin() as session:
            service.load_gulou(session, Principal.system())
            key = apikeys.create_key(
                session, Principal.system(), "bench", rate_limit="100000/minute"
            ).key
        base, thread, server = _serve(platform)
        form = {"api_key": key, "service_code": "fire-lane", "description": "消防通道被堵",
                "attribute[BLOCKING]": "full"}  # fmt: skip

        def one(_: int) -> int:
            with httpx.Client(timeout=60) as client:
                answer = client.post(f"{base}/open311/v2/requests.json", data=form,
                                     files={"media": ("p.jpg", photo, "image/jpeg")})  # fmt: skip
                return answer.status_code

        try:
            one(0)  # warm up
            started = time.perf_counter()
            with ThreadPoolExecutor(CLIENTS) as pool:
                codes = list(pool.map(one, range(REPORTS)))
            elapsed = time.perf_counter() - started
        finally:
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(timeout=10)
            platform.close()
        accepted = sum(1 for c in codes if c == 200)
        if accepted != REPORTS:
            raise RuntimeError(f"only {accepted} of {REPORTS} reports were accepted: {set(codes)}")
    per_s = accepted / elapsed
    baseline = photo_baseline(photo, max(10, REPORTS // 4))
    return {
        "grid.reports_per_s": round(per_s, 2),
        "grid.photo_baseline_per_s": round(baseline, 2),
        "grid.reports_vs_photo_baseline": round(per_s / baseline, 3),
    }
