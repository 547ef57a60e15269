"""Code tables of the catalog: the 21 open-data domains and the base resource libraries.

The domains (主题/领域) are the 21 in which Chinese provincial public-data open platforms
(公共信息资源统一开放平台, e.g. Fujian's, Shandong's, Zhejiang's) classify their datasets;
the wording varies a little between provinces (教育文化 / 教育科技, 资源能源 / 能源环境),
we keep the names of the list below. The base libraries (基础资源库) are the four of the
政务信息资源目录编制指南: population, legal persons, natural resources and geo-spatial
information, e-licences. Both are stored by their stable code; names are for display.
"""

from __future__ import annotations

from dataclasses import dataclass

from minyun.catalog.models import BaseLibrary


@dataclass(frozen=True)
class Term:
    """One entry of a code table: stable code, Chinese name, English name."""

    code: str
    zh: str
    en: str

    def name(self, locale: str) -> str:
        return self.zh if locale == "zh" else self.en


THEMES: tuple[Term, ...] = (
    Term("credit", "信用服务", "Credit"),
    Term("health", "医疗卫生", "Health care"),
    Term("employment", "社保就业", "Social security and employment"),
    Term("public-security", "公共安全", "Public security"),
    Term("housing", "城建住房", "Urban construction and housing"),
    Term("transport", "交通运输", "Transport"),
    Term("education", "教育文化", "Education and culture"),
    Term("science", "科技创新", "Science and innovation"),
    Term("energy", "资源能源", "Resources and energy"),
    Term("environment", "生态环境", "Ecology and environment"),
    Term("industry-agriculture", "工业农业", "Industry and agriculture"),
    Term("commerce", "商贸流通", "Commerce and trade"),
    Term("finance", "财税金融", "Finance and taxation"),
    Term("work-safety", "安全生产", "Work safety"),
    Term("market-regulation", "市场监管", "Market regulation"),
    Term("social-assistance", "社会救助", "Social assistance"),
    Term("legal", "法律服务", "Legal services"),
    Term("living", "生活服务", "Daily-life services"),
    Term("weather", "气象服务", "Weather"),
    Term("geospatial", "地理空间", "Geo-spatial"),
    Term("organizations", "机构团体", "Organisations and associations"),
)

BASE_LIBRARIES: tuple[Term, ...] = (
    Term(BaseLibrary.POPULATION, "人口基础库", "Population"),
    Term(BaseLibrary.LEGAL_PERSON, "法人基础库", "Legal persons"),
    Term(BaseLibrary.GEOSPATIAL, "自然资源和空间地理基础库", "Natural resources and geo-spatial"),
    Term(BaseLibrary.LICENCE, "电子证照基础库", "E-licences"),
)

THEME_BY_CODE = {t.code: t for t in THEMES}
BASE_LIBRARY_BY_CODE = {t.code: t for t in BASE_LIBRARIES}


def theme_code(value: str) -> str:
    """The theme code for a code or a Chinese / English name; KeyError if unknown."""
    if value in THEME_BY_CODE:
        return value
    for term in THEMES:
        if value in (term.zh, term.en):
            return term.code
    raise KeyError(value)
