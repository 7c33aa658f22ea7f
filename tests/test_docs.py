"""The README stays short and leads to every page of docs/; every link resolves, and every
`facilflow` command the pages name exists."""

import re
from pathlib import Path

import click
import pytest

from facilflow_assets.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#([\w-]+))?\)")
COMMAND = re.compile(r"`(?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?facilflow ([^`]*)`")
PLACEHOLDER = re.compile(r"^(<.*|[A-Z_]+|…|\.\.\.|\d+)$")  # FILE, VERSION, <use case>, 2


def test_the_readme_fits_and_links_every_page_of_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    linked = {ROOT / target for target, _ in LINK.findall(text)}
    assert PAGES and not [page.name for page in PAGES if page not in linked]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_relative_link_resolves_to_a_file_and_heading(page):
    for target, anchor in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        linked = (page.parent / target).resolve()
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.MULTILINE)
            assert anchor in {_slug(h) for h in headings}, f"{page.name}: {target}#{anchor}"


def _missing_command(words: list[str]) -> str | None:
    """The first word naming no command of the CLI, or None: options and their values,
    placeholders and alternatives (`list|check`) are read as a user would."""
    command: click.Command = main
    words = [w.strip("[]") for w in words]
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            option = next((p for p in command.params if word in p.opts), None)
            if option is not None and not getattr(option, "is_flag", False) and words:
                words.pop(0)
            continue
        if not isinstance(command, click.Group) or PLACEHOLDER.match(word):
            return None
        names = word.replace("\\|", "|").split("|")
        unknown = [n for n in names if n not in command.commands]
        if unknown:
            return unknown[0]
        command = command.commands[names[0]]
    return None


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_facilflow_command_the_docs_name_exists(page):
    named = COMMAND.findall(page.read_text())
    missing = {line: _missing_command(line.split()) for line in named}
    assert not {line: word for line, word in missing.items() if word}


def test_the_command_check_finds_a_command_that_does_not_exist():
    assert _missing_command("models promote 2".split()) == "promote"
    assert _missing_command("runs [-u NAME] compare --top 10".split()) is None
    assert _missing_command("use-cases list\\|lint FILE".split()) == "lint"
