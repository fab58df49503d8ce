"""The documentation holds together: a short README that links every page of docs/, and links
between pages that lead somewhere. Fast: no network, no server, no dlt.

Every relative link of README.md and docs/*.md must name an existing file, and its ``#anchor`` a
heading of that page (GitHub's anchors: lower-case, spaces to hyphens, punctuation other than
hyphens and underscores removed, backticks too). Links to other sites are not followed.
"""

from __future__ import annotations

import re
from pathlib import Path

import doc_pages
from doc_pages import DOCS, README, anchor, anchors, broken_links, links, page, pages

README_MAX_LINES = 250
#: a page longer than this has a table of contents: links to its own sections near the top
TOC_AFTER_LINES = 150


def test_every_relative_link_leads_to_a_file_and_a_heading():
    problems = broken_links([README, *pages()])
    assert not problems, "broken links in the documentation:\n  " + "\n  ".join(problems)


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\n## Exit codes\n\n```bash\n# not a heading\n```\n")
    (docs / "b.md").write_text(
        "# B\n\n[fine](a.md#exit-codes) [here](#b) `[in code](nowhere.md)`\n"
        "[gone](c.md) [no heading](a.md#exit-code)\n[fenced heading](a.md#not-a-heading)\n"
        "```\n[in a block](nowhere.md)\n```\n[site](https://example.com/x.md)\n")

    problems = broken_links([docs / "b.md"])

    assert [p.split(": ", 1)[1] for p in problems] == [
        "c.md: no such file",
        "a.md#exit-code: no heading #exit-code in a.md",
        "a.md#not-a-heading: no heading #not-a-heading in a.md",
    ]
    assert problems[0].startswith("b.md:4:")


def test_anchors_follow_githubs_rule():
    assert anchor("dlt's own tools and `dlt deploy`") == "dlts-own-tools-and-dlt-deploy"
    assert anchor("One pipeline name, another warehouse") == "one-pipeline-name-another-warehouse"
    assert anchor("`leads_history` and `contacts_history`") == "leads_history-and-contacts_history"
    assert anchor("Pushing leads back (reverse ETL)") == "pushing-leads-back-reverse-etl"
    assert anchors("# T\n\n## Notes\n\n## Notes\n") == {"t", "notes", "notes-1"}


def test_the_readme_is_short_and_links_every_page():
    text = README.read_text(encoding="utf-8")
    lines = text.count("\n") + (not text.endswith("\n"))
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"
    linked = {target.split("#")[0] for _, target in links(text)}
    unlinked = [p.name for p in pages() if f"docs/{p.name}" not in linked]
    assert not unlinked, f"README.md does not link docs/{unlinked}"
    assert pages(), "docs/ has no pages"


def test_every_page_starts_with_a_title_and_a_summary():
    for path in pages():
        lines = path.read_text(encoding="utf-8").split("\n")
        assert re.match(r"# \S", lines[0]), f"docs/{path.name} does not start with a # title"
        assert lines[1] == "" and lines[2] and not lines[2].startswith(("#", "* ", "- ", "|", "```")), \
            f"docs/{path.name}: a one-paragraph summary follows the title"
        assert path.name == path.name.lower() and " " not in path.name and "_" not in path.name


def test_long_pages_have_a_table_of_contents():
    for path in pages():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= TOC_AFTER_LINES:
            continue
        sections = [(i, anchor(title)) for i, level, title in doc_pages.headings(text)
                    if level == 2]
        top = sections[0][0]  # the contents come before the first section
        listed = {target[1:] for line, target in links(text) if line <= top
                  and target.startswith("#")}
        missing = [a for _, a in sections if a not in listed]
        assert not missing, f"docs/{path.name}: the table of contents lacks {missing}"


def test_the_configuration_page_is_the_settings_spec():
    """docs/configuration.md's two tables are ``settings.SPEC``, row for row: a setting added,
    renamed, given another default or another meaning there is the table to copy here
    (``settings.settings_table``)."""
    from rackwave_source.settings import settings_table

    text = page("configuration.md")
    for push in (False, True):
        assert settings_table(push) in text, (
            "docs/configuration.md differs from settings.SPEC; paste this table:\n"
            + settings_table(push))


def test_code_and_messages_point_at_pages_that_exist():
    """"docs/<page>.md" named in the code, the tests, the recipes and the dbt project exists."""
    repo = DOCS.parent
    named = set()
    for folder in ("rackwave_source", "pipelines", "rackwave_sandbox", "rackwave_dbt", "recipes",
                   "tests", "benchmarks", "scripts"):
        for path in (repo / folder).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".yml", ".yaml", ".sql", ".md", ""}:
                text = path.read_text(encoding="utf-8", errors="replace")
                named.update(re.findall(r"docs/([a-z0-9-]+\.md)", text))
    missing = sorted(name for name in named if not (DOCS / name).exists())
    assert not missing, f"code names docs pages that do not exist: {missing}"
