"""Report photos live where the lake keeps its objects: a folder, or S3-compatible storage.

The S3 case runs against a real S3 server on loopback (moto's threaded server), configured
the way production configures the lake: `MINYUN_LAKE_URI=s3://bucket/prefix` and the AWS_*
variables delta-rs and pyarrow both read. Only stripped copies are ever stored or served.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from minyun.apps.grid import apikeys, service
from minyun.apps.grid.models import Report
from minyun.apps.grid.photos import PhotoStore
from minyun.apps.grid.service import NewReport
from minyun.core.platform import Platform
from minyun.web.app import create_app
from tests.apps.grid.conftest import DONGJIEKOU, SYSTEM, jpeg, officer
from tests.browser import serve
from tests.conftest import make_settings

BUCKET = "minyun-lake"


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """A local S3 server with the lake's bucket; the environment points the node at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "minyun-test", "AWS_SECRET_ACCESS_KEY": "minyun-test",
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ALLOW_HTTP": "true",
        }.items():  # fmt: skip
            env.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        try:
            yield client
        finally:
            server.stop()


def _objects(client: Any, prefix: str) -> dict[str, bytes]:
    """The bucket's objects under `prefix` (not the empty folder markers pyarrow leaves)."""
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for o in listed if not o["Key"].endswith("/")}  # fmt: skip


def _bare(data: bytes) -> bool:
    """A JPEG with no EXIF block, no GPS and none of the camera's tags."""
    return (
        dict(Image.open(io.BytesIO(data)).getexif()) == {}
        and b"Exif" not in data
        and b"TestCam" not in data
    )


def test_photos_of_an_s3_lake_are_objects_in_its_bucket_stripped(s3: Any, tmp_path: Path) -> None:
    platform = Platform.open(make_settings(tmp_path / "var", lake_uri=f"s3://{BUCKET}/fuzhou"))
    platform.migrate()
    try:
        with platform.factory.begin() as session:
            service.load_gulou(session, SYSTEM)
            key = apikeys.create_key(session, SYSTEM, "s3-client").key
        original = jpeg(gps=DONGJIEKOU)
        assert b"TestCam" in original and not _bare(original)
        with serve(create_app(platform)) as base:
            answer = httpx.post(f"{base}/open311/v2/requests.json", timeout=30,
                                data={"api_key": key, "service_code": "garbage"},
                                files={"media": ("p.jpg", original, "image/jpeg")})  # fmt: skip
            assert answer.status_code == 200, answer.text
            request_id = answer.json()[0]["service_request_id"]
            stored = _objects(s3, "fuzhou/objects/grid/photos/")
            assert len(stored) == 2 and all(_bare(data) for data in stored.values())
            assert original not in stored.values()
            with platform.factory() as session:
                report = session.get(Report, request_id)
                assert report is not None and report.street_code == "350102004"  # EXIF place
                [photo] = report.photos
                assert f"fuzhou/objects/grid/photos/{photo.key}" in stored
            listed = httpx.get(f"{base}/open311/v2/requests/{request_id}.json", timeout=10)
            media = httpx.get(listed.json()[0]["media_url"].replace(
                platform.settings.base_url, base), timeout=10)  # fmt: skip
            assert media.status_code == 200 and _bare(media.content)
            assert media.content == stored[f"fuzhou/objects/grid/photos/{photo.key}"]
            thumb = httpx.get(f"{base}/open311/v2/media/{photo.id}.thumb.jpg", timeout=10)
            assert thumb.status_code == 200 and _bare(thumb.content)
    finally:
        platform.close()


def test_objects_of_a_rolled_back_report_are_removed_from_the_bucket(
    s3: Any, tmp_path: Path
) -> None:
    platform = Platform.open(make_settings(tmp_path / "var", lake_uri=f"s3://{BUCKET}/xiamen"))
    platform.migrate()
    try:
        with platform.factory.begin() as session:
            service.load_gulou(session, SYSTEM)
        store = PhotoStore(f"s3://{BUCKET}/xiamen")
        session = platform.factory()
        with session.begin():
            service.file_report(session, officer(session, "gl-st-004"), store,
                                NewReport("garbage", "垃圾", *DONGJIEKOU, photos=[jpeg()]))  # fmt: skip
            assert len(store.keys()) == 2
            session.rollback()
        session.close()
        assert store.keys() == [] and _objects(s3, "xiamen/") == {}
    finally:
        platform.close()


def test_a_folder_lake_keeps_photos_under_its_objects_folder(tmp_path: Path) -> None:
    store = PhotoStore(str(tmp_path / "lake"))
    from minyun.apps.grid.photos import process

    key, thumb = store.put(process(jpeg(gps=DONGJIEKOU)))
    assert (tmp_path / "lake" / "objects" / "grid" / "photos" / key).is_file()
    assert store.keys() == sorted([key, thumb]) and _bare(store.get(key))
    store.delete(key)
    assert not store.exists(key) and store.exists(thumb)
    with pytest.raises(Exception, match="bad photo key"):
        store.get("../../secret.key")
