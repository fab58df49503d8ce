"""The documentation as the tests read it: README.md and docs/*.md, their sections, links, anchors.

Tests that run or check what a page documents (the history queries, the privacy recipes, the
columns of the tables) take the page's section from here, by its heading, so that they follow the
text wherever it sits on the page. No dlt, no network: tests/test_docs.py uses it in a second.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
README = REPO / "README.md"

_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HEADING = re.compile(r"^(#{1,6}) +(.*?) *#* *$")
_CODE_SPAN = re.compile(r"`[^`]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?: +\"[^\"]*\")?\)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def page(name: str) -> str:
    """The text of ``docs/<name>`` (``"privacy.md"``)."""
    return (DOCS / name).read_text(encoding="utf-8")


def pages() -> List[Path]:
    """Every page of docs/, by name."""
    return sorted(DOCS.glob("*.md"))


def prose(text: str) -> str:
    """``text`` with fenced code blocks blanked (lines kept, so line numbers still hold)."""
    out, fenced = [], False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def headings(text: str) -> List[Tuple[int, int, str]]:
    """``(line index, level, title)`` of every heading outside code blocks."""
    found = []
    for index, line in enumerate(prose(text).split("\n")):
        match = _HEADING.match(line)
        if match:
            found.append((index, len(match.group(1)), match.group(2)))
    return found


def anchor(title: str) -> str:
    """GitHub's anchor for a heading: the text of its links kept, lower-case, punctuation other
    than hyphens and underscores removed (backticks too), spaces turned into hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> Set[str]:
    """Every anchor of a page; GitHub numbers a repeated one ``-1``, ``-2``..."""
    seen: Dict[str, int] = {}
    result = set()
    for _, _, title in headings(text):
        base = anchor(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def section(name: str, title: str) -> str:
    """The section of ``docs/<name>`` under the heading ``title`` (as written, backticks
    included), up to the next heading of the same or a higher level."""
    text = page(name)
    lines = text.split("\n")
    found = headings(text)
    for position, (index, level, heading) in enumerate(found):
        if heading == title:
            end = next((i for i, lv, _ in found[position + 1:] if lv <= level), len(lines))
            return "\n".join(lines[index:end])
    raise AssertionError(f"docs/{name} has no heading {title!r}: {[h for _, _, h in found]}")


def links(text: str) -> List[Tuple[int, str]]:
    """``(line number, target)`` of every inline link outside code blocks and code spans."""
    plain = _CODE_SPAN.sub(lambda m: re.sub(r"[^\n]", "x", m.group()), prose(text))
    return [(plain.count("\n", 0, m.start()) + 1, m.group(1)) for m in _LINK.finditer(plain)]


def broken_links(files: Iterable[Path]) -> List[str]:
    """Every relative link of ``files`` whose file does not exist, or whose ``#anchor`` is no
    heading of the page it points at: one line each, ``file:line: target: why``."""
    problems = []
    for source in files:
        for line, target in links(source.read_text(encoding="utf-8")):
            if _SCHEME.match(target):
                continue  # https://, mailto: ... not checked here (no network)
            path, _, fragment = target.partition("#")
            try:
                where = source.resolve().relative_to(REPO).as_posix()
            except ValueError:
                where = source.name
            destination = (source.parent / path).resolve() if path else source
            if not destination.exists():
                problems.append(f"{where}:{line}: {target}: no such file")
                continue
            if fragment and destination.suffix == ".md" \
                    and fragment not in anchors(destination.read_text(encoding="utf-8")):
                problems.append(f"{where}:{line}: {target}: no heading #{fragment} in "
                                f"{destination.name}")
    return problems
