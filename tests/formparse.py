"""What a browser would post from a page's form: its inputs, selects and text areas as filled."""

from __future__ import annotations

from html.parser import HTMLParser


class _Form(HTMLParser):
    def __init__(self, form_id: str | None, action: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.want = (form_id, action)
        self.inside = False
        self.values: dict[str, str] = {}
        self.select: str | None = None
        self.first_option: str | None = None
        self.area: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            form_id, action = self.want
            self.inside = (form_id is None or a.get("id") == form_id) and (
                action is None or a.get("action") == action
            )
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.values[name] = a.get("value", "on")
            elif kind not in ("file", "submit"):
                self.values[name] = a.get("value", "")
        elif tag == "select" and name:
            self.select, self.first_option = name, None
        elif tag == "option" and self.select:
            value = a.get("value", "")
            if self.first_option is None:
                self.first_option = value
                self.values.setdefault(self.select, value)
            if "selected" in a:
                self.values[self.select] = value
        elif tag == "textarea" and name:
            self.area = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.area = None

    def handle_data(self, data: str) -> None:
        if self.area:
            self.values[self.area] += data


def form_values(
    html: str, *, form_id: str | None = None, action: str | None = None
) -> dict[str, str]:
    """The values a browser would post from the form (the first one, or the one named)."""
    parser = _Form(form_id, action)
    parser.feed(html)
    return parser.values
