"""Report photos: type and size checks, the EXIF location, a stripped copy and a thumbnail.

Only the re-encoded copy is ever stored: Pillow decodes the upload, turns it upright by its
EXIF orientation, reads the GPS position, and writes a fresh JPEG without any metadata, so
no one downstream sees the camera's location, time or serial number.
"""

from __future__ import annotations

import contextlib
import io
import re
import uuid
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow.fs as pafs
from PIL import Image, ImageOps, UnidentifiedImageError

from minyun.core import clock
from minyun.core.errors import Invalid, NotFound

MAX_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 2048  # the stored copy's longest side
THUMB_SIDE = 320
FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
GPS_IFD = 0x8825
ORIENTATION = 0x0112


@dataclass(frozen=True)
class Processed:
    """A checked photo: the stripped JPEG, its thumbnail, and the location it carried."""

    jpeg: bytes
    thumb: bytes
    width: int
    height: int
    lat: float | None
    long: float | None


def process(data: bytes) -> Processed:
    """Check an upload is a JPEG, PNG or WebP image of at most 8 MB and re-encode it bare."""
    if not data:
        raise Invalid("the photo is empty", field="media", code="photo-empty")
    if len(data) > MAX_BYTES:
        raise Invalid(
            f"the photo has {len(data)} bytes, more than {MAX_BYTES}",
            field="media",
            code="photo-too-large",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise Invalid("the photo is not a JPEG, PNG or WebP image", field="media",
                              code="photo-type")  # fmt: skip
            if image.width * image.height > MAX_PIXELS:
                raise Invalid(
                    "the photo has too many pixels", field="media", code="photo-too-large"
                )
            lat, long = _gps(image)
            if image.width > MAX_SIDE or image.height > MAX_SIDE:
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
            image.load()
            turned = image.getexif().get(ORIENTATION, 1) not in (1, None)
            upright = ImageOps.exif_transpose(image) if turned else image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:  # fmt: skip
        raise Invalid(
            "the photo is not a readable image", field="media", code="photo-type"
        ) from exc
    # Nothing of the upload's metadata (EXIF, comments, ICC, XMP) may reach the stored copy.
    upright.info = {}
    rgb = upright if upright.mode == "RGB" else upright.convert("RGB")
    if rgb.width > MAX_SIDE or rgb.height > MAX_SIDE:
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), reducing_gap=2.0)
    scale = THUMB_SIDE / max(rgb.width, rgb.height)
    thumb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                       Image.Resampling.BILINEAR, reducing_gap=2.0) if scale < 1 else rgb  # fmt: skip
    return Processed(_jpeg(rgb, 85), _jpeg(thumb, 75), rgb.width, rgb.height, lat, long)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=False)  # no exif= argument: nothing kept
    return out.getvalue()


def _gps(image: Image.Image) -> tuple[float | None, float | None]:
    """The EXIF GPS position in decimal degrees (WGS-84), or (None, None)."""
    try:
        gps = image.getexif().get_ifd(GPS_IFD)
    except Exception:  # a broken EXIF block is no location, not a broken photo
        return None, None
    try:
        lat = _degrees(gps[2], gps.get(1, "N"), "S")
        long = _degrees(gps[4], gps.get(3, "E"), "W")
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None, None
    if not (-90 <= lat <= 90 and -180 <= long <= 180):
        return None, None
    return lat, long


def _degrees(value: tuple[float, float, float], ref: object, negative: str) -> float:
    d, m, s = (float(v) for v in value)
    sign = -1.0 if str(ref).upper().startswith(negative) else 1.0
    return sign * (d + m / 60 + s / 3600)


KEY = re.compile(r"\d{4}/\d{2}/\d{2}/[0-9a-f]{32}(\.thumb)?\.jpg")


class PhotoStore:
    """Photos as objects in the lake's own storage, under `<lake>/objects/grid/photos/`.

    The lake's URI chooses the storage as it does for the Delta tables: a folder by default,
    S3-compatible object storage for `s3://bucket/prefix` (pyarrow reads the same AWS_*
    variables — keys, region, `AWS_ENDPOINT_URL` — that delta-rs reads for the tables).
    Only stripped copies are ever written here (see `process`).
    """

    def __init__(self, lake_uri: str) -> None:
        uri = lake_uri.rstrip("/")
        if uri.startswith("file://"):
            uri = uri.removeprefix("file://")
        if "://" not in uri:
            uri = str(Path(uri).resolve())
        self.fs, base = pafs.FileSystem.from_uri(uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.base = f"{base.rstrip('/')}/objects/grid/photos"

    def put(self, processed: Processed) -> tuple[str, str]:
        """Write the photo and its thumbnail; their object keys."""
        day = clock.now().strftime("%Y/%m/%d")
        name = uuid.uuid4().hex
        key, thumb_key = f"{day}/{name}.jpg", f"{day}/{name}.thumb.jpg"
        if self.local:
            self.fs.create_dir(f"{self.base}/{day}", recursive=True)
        for k, data in ((key, processed.jpeg), (thumb_key, processed.thumb)):
            with self.fs.open_output_stream(
                self._path(k), metadata={"Content-Type": "image/jpeg"}
            ) as out:
                out.write(data)
        return key, thumb_key

    def _path(self, key: str) -> str:
        # Keys are ours (day/uuid): anything else is refused before it reaches the storage.
        if not KEY.fullmatch(key):
            raise Invalid("bad photo key", field="key")
        return f"{self.base}/{key}"

    def get(self, key: str) -> bytes:
        """The object's bytes; NotFound if it is gone."""
        try:
            with self.fs.open_input_stream(self._path(key)) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            raise NotFound(f"no photo object {key}", code="unknown-photo") from None

    def exists(self, key: str) -> bool:
        return bool(self.fs.get_file_info(self._path(key)).type == pafs.FileType.File)

    def keys(self) -> list[str]:
        """Every object key held (for checks and clean-ups)."""
        selector = pafs.FileSelector(self.base, recursive=True, allow_not_found=True)
        return sorted(i.path.removeprefix(self.base + "/") for i in self.fs.get_file_info(selector)
                      if i.type == pafs.FileType.File)  # fmt: skip

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self._path(key))


@lru_cache(maxsize=8)
def store_for(lake_uri: str) -> PhotoStore:
    """The photo store of a lake (one per process: an object-storage client is not free)."""
    return PhotoStore(lake_uri)
