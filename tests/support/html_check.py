"""A small HTML check for every page: unique ids, labelled controls, one h1, balanced tags.

It uses only `html.parser`, so it runs wherever the tests run. `problems(text)` lists what is
wrong; `assert_valid_page(text)` fails a test with that list.
"""

from __future__ import annotations

from html.parser import HTMLParser

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
UNLABELLED_INPUT_TYPES = {"hidden", "submit", "button", "reset", "image"}


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: dict[str, int] = {}
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, str | None, bool]] = []
        self.h1 = 0
        self.stack: list[str] = []
        self.label_depth = 0
        self.problems: list[str] = []
        self.doctype = False
        self.html_lang = None

    def handle_decl(self, decl):
        if decl.lower() == "doctype html":
            self.doctype = True

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        element_id = attributes.get("id")
        if element_id is not None:
            if not element_id.strip():
                self.problems.append(f"<{tag}> has an empty id")
            self.ids[element_id] = self.ids.get(element_id, 0) + 1
        if tag == "html":
            self.html_lang = attributes.get("lang")
        if tag == "h1":
            self.h1 += 1
        if tag == "label":
            if attributes.get("for"):
                self.label_for.add(attributes["for"])
            self.label_depth += 1
        if tag in ("input", "select", "textarea"):
            kind = (attributes.get("type") or "text").lower() if tag == "input" else tag
            if kind not in UNLABELLED_INPUT_TYPES:
                self.controls.append(
                    (f"<{tag} name={attributes.get('name')!r}>", element_id, self.label_depth > 0)
                )
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if tag == "label":
            self.label_depth = max(0, self.label_depth - 1)
        if not self.stack:
            self.problems.append(f"</{tag}> closes nothing")
            return
        if self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1]}> (open: {self.stack})")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        self.stack.pop()


def problems(text: str, *, fragment: bool = False) -> list[str]:
    """Returns what is wrong with a page (or, with `fragment`, a piece swapped into one)."""
    checker = _Checker()
    checker.feed(text)
    checker.close()
    found = list(checker.problems)
    found += [f"duplicate id {i!r} ({n} times)" for i, n in checker.ids.items() if n > 1]
    for name, element_id, wrapped in checker.controls:
        if not wrapped and (element_id is None or element_id not in checker.label_for):
            found.append(f"{name} has no label")
    if checker.stack:
        found.append(f"unclosed elements: {checker.stack}")
    if not fragment:
        if checker.h1 != 1:
            found.append(f"{checker.h1} <h1> elements; a page has exactly one")
        if not checker.doctype:
            found.append("no <!doctype html>")
        if not checker.html_lang:
            found.append("<html> has no lang")
    elif checker.h1 > 1:
        found.append(f"{checker.h1} <h1> elements in a fragment")
    return found


def assert_valid_page(text: str, *, fragment: bool = False) -> None:
    """Fails with every problem `problems` finds."""
    found = problems(text, fragment=fragment)
    assert not found, "HTML check failed:\n  " + "\n  ".join(found)
