"""Sentences the services write in English, said in the page's language.

Services keep their notes, refusal reasons and error details in English: the API, the CLI
and the logs read them as they are. A page shows them through `say` (the `say` filter of
the templates): a sentence that is a message of the catalog is translated; one that matches
a registered pattern is rebuilt from the pattern's message, translated, with the pattern's
parts put back; any other is shown as it is. A part named `time` that holds an ISO 8601
time is shown in China time; parts named `org` or `orgs` (department codes) are shown by
name when the page gives the names; parts named in NAMED_PARTS (`action`, `kind`, …) by
their display names.

Page modules register the sentences of their domain with `sentence` at import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime

from minyun.web.i18n import N_

PATTERNS: list[tuple[re.Pattern[str], str]] = []
# Parts shown by name rather than as stored: a part named `action` through the actions'
# names, `kind` through the job kinds', and so on (filled by minyun.web.templating).
NAMED_PARTS: dict[str, Mapping[str, str]] = {}


def sentence(pattern: str, message: str) -> None:
    """Say the sentences that match `pattern` (named groups) as `message` (`%(name)s`)."""
    PATTERNS.append((re.compile(f"^{pattern}$", re.DOTALL), message))


def say(
    text: str | None,
    gettext: Callable[[str], str],
    when: Callable[[datetime], str],
    names: Mapping[str, str] | None = None,
) -> str:
    """`text` in the page's language, as far as the catalog and the patterns know it."""
    if not text:
        return ""
    translated = gettext(text)
    if translated != text:
        return translated
    for pattern, message in PATTERNS:
        found = pattern.match(text)
        if found is None:
            continue
        parts = {
            name: _part(name, value or "", gettext, when, names or {})
            for name, value in found.groupdict().items()
        }
        return gettext(message) % parts
    return text


def _part(
    name: str,
    value: str,
    gettext: Callable[[str], str],
    when: Callable[[datetime], str],
    names: Mapping[str, str],
) -> str:
    if name == "time":
        try:
            return when(datetime.fromisoformat(value))
        except ValueError:
            return value
    if name in ("org", "orgs"):
        return "、".join(names.get(code, code) for code in re.split(r",\s*", value))
    if name == "reason":
        return say(value, gettext, when, names)
    if name in NAMED_PARTS:
        return gettext(NAMED_PARTS[name].get(value, value))
    return value


# Errors the pages show (error details that name what was not found).
sentence(r"no resource (?P<code>\S+)", N_("There is no resource %(code)s."))
sentence(r"no job (?P<id>\S+)", N_("There is no job %(id)s."))
sentence(r"no alert (?P<id>\d+)", N_("There is no alert %(id)s."))
sentence(r"no station (?P<code>\S+)", N_("There is no station %(code)s."))
sentence(r"no organisation (?P<code>\S+)", N_("There is no organisation %(code)s."))
sentence(
    r"sign in first: without an account only open data is shown",
    N_("Sign in first: without an account only open data is shown."),
)
sentence(r"not a date or time: (?P<value>.*)", N_("Not a date or time: %(value)s"))

# What the audit log's details say most often.
sentence(
    r"(?P<action>[\w.]+) is not permitted for this account",
    N_("This account may not do this: %(action)s"),
)
sentence(
    r"(?P<kind>[a-z]+\.[a-z.]+) (?P<state>succeeded|failed|cancelled)", N_("%(kind)s: %(state)s")
)
sentence(r"schema (?P<version>[\d.]+) \((?P<change>\w+)\)", N_("Schema %(version)s (%(change)s)"))
sentence(
    r"(?P<mode>full|append|upsert|delete) from (?P<source>.+) \(job (?P<job>\w+)\)",
    N_("%(mode)s load from %(source)s (job %(job)s)"),
)
sentence(
    r"lake version (?P<version>\d+): (?P<mode>\w+), (?P<accepted>\d+) accepted, "
    r"(?P<rejected>\d+) rejected",
    N_("Lake version %(version)s: %(mode)s, %(accepted)s rows accepted, %(rejected)s rejected"),
)
sentence(r"(?P<kind>[a-z]+\.[a-z]+)", "%(kind)s")  # a job kind alone, by its name
