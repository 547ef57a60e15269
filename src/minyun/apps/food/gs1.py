"""GS1 identifiers: EPC URNs (TDS 2.x) and GS1 Digital Link URIs of the same things.

EPCIS 2.0 lets a document name an object either way: `urn:epc:id:sgtin:0614141.107346.2017`
and `https://id.gs1.org/01/00614141073467/21/2017` are one trade item. minyun stores and
matches every identifier in one canonical form, the Digital Link on `https://id.gs1.org`
(as the CBV 2.0 event hash does), so a query by either form finds events sent in the other.
A URI that is neither (a company's own URL, an unknown scheme) is kept as it was sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

DL_ROOT = "https://id.gs1.org"
_DL = re.compile(r"^https?://[^/]+(?P<path>(?:/[0-9]{2,4}/[^/?#]+)+)/?(?:[?#].*)?$")
# Which application identifier keys an instance or a class, and the qualifiers after it.
_PRIMARY = {"00", "01", "253", "255", "401", "402", "414", "417", "8003", "8004", "8006", "8010",
            "8017", "8018"}  # fmt: skip


def check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit of `digits` (weights 3,1,3,… from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def _gtin(company: str, item: str) -> str:
    """GTIN-14 from an EPC's company prefix and indicator + item reference."""
    body = item[:1] + company + item[1:]
    return body + check_digit(body)


def _gln(company: str, location: str) -> str:
    body = company + location
    return body + check_digit(body)


def _unescape(part: str) -> str:
    return unquote(part)


_URN = re.compile(r"^urn:epc:(id|class|idpat):([a-z0-9]+):(.+)$")


def urn_to_dl(urn: str) -> str | None:
    """The canonical Digital Link of an EPC URN (id, class or pattern), or None if not one."""
    m = _URN.match(urn.strip())
    if m is None:
        return None
    kind, scheme, rest = m.groups()
    parts = rest.split(".")
    try:
        if scheme == "sgtin" and len(parts) == 3:
            gtin = _gtin(parts[0], parts[1])
            if kind == "idpat" and parts[2] == "*":
                return f"{DL_ROOT}/01/{gtin}"
            return f"{DL_ROOT}/01/{gtin}/21/{_unescape(parts[2])}"
        if scheme == "lgtin" and len(parts) == 3:
            return f"{DL_ROOT}/01/{_gtin(parts[0], parts[1])}/10/{_unescape(parts[2])}"
        if scheme == "sscc" and len(parts) == 2:
            body = parts[1][:1] + parts[0] + parts[1][1:]
            return f"{DL_ROOT}/00/{body}{check_digit(body)}"
        if scheme == "sgln" and len(parts) == 3:
            gln = _gln(parts[0], parts[1])
            ext = _unescape(parts[2])
            return f"{DL_ROOT}/414/{gln}" + ("" if ext in ("0", "") else f"/254/{ext}")
        if scheme == "pgln" and len(parts) == 2:
            return f"{DL_ROOT}/417/{_gln(parts[0], parts[1])}"
        if scheme == "grai" and len(parts) == 3:
            body = parts[0] + parts[1]
            return f"{DL_ROOT}/8003/0{body}{check_digit(body)}{_unescape(parts[2])}"
        if scheme == "giai" and len(parts) == 2:
            return f"{DL_ROOT}/8004/{parts[0]}{_unescape(parts[1])}"
        if scheme == "gdti" and len(parts) == 3:
            body = parts[0] + parts[1]
            return f"{DL_ROOT}/253/{body}{check_digit(body)}{_unescape(parts[2])}"
        if scheme == "gsrn" and len(parts) == 2:
            body = parts[0] + parts[1]
            return f"{DL_ROOT}/8018/{body}{check_digit(body)}"
    except (ValueError, IndexError):
        return None
    return None


@lru_cache(maxsize=65536)
def canonical(uri: str) -> str:
    """The one form minyun stores and matches: the Digital Link on id.gs1.org where the URI
    names a GS1 key (an EPC URN or a Digital Link on any host), else the URI as sent."""
    text = uri.strip()
    if text.startswith("urn:epc:"):
        return urn_to_dl(text) or text
    m = _DL.match(text)
    if m is not None:
        segments = m.group("path").strip("/").split("/")
        if segments and segments[0] in _PRIMARY and len(segments) % 2 == 0:
            if segments[0] == "01":
                segments[1] = segments[1].zfill(14)
            return DL_ROOT + "/" + "/".join(segments)
    return text


@dataclass(frozen=True)
class Product:
    """A trade item named by a Digital Link: GTIN with its lot or serial, if any."""

    gtin: str
    lot: str | None = None
    serial: str | None = None

    @property
    def uri(self) -> str:
        """The canonical Digital Link of this product (lot or serial level)."""
        tail = f"/10/{self.lot}" if self.lot else f"/21/{self.serial}" if self.serial else ""
        return f"{DL_ROOT}/01/{self.gtin}{tail}"

    @property
    def path(self) -> str:
        """The path a Digital Link QR on the pack resolves to on this node."""
        return self.uri.removeprefix(DL_ROOT)


def product_of(uri: str) -> Product | None:
    """The GTIN, lot and serial a canonical Digital Link names, or None if it names no GTIN."""
    text = canonical(uri)
    if not text.startswith(DL_ROOT + "/01/"):
        return None
    segments = text.removeprefix(DL_ROOT + "/").split("/")
    pairs = dict(zip(segments[::2], segments[1::2], strict=False))
    gtin = pairs.get("01", "")
    if not re.fullmatch(r"[0-9]{14}", gtin) or check_digit(gtin[:-1]) != gtin[-1]:
        return None
    return Product(gtin=gtin, lot=pairs.get("10"), serial=pairs.get("21"))


def class_of(uri: str) -> str | None:
    """The lot-level class (GTIN + lot) an instance Digital Link belongs to, when it says."""
    product = product_of(uri)
    if product is None or product.lot is None:
        return None
    return Product(product.gtin, lot=product.lot).uri
