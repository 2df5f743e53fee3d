"""Every relative link and #anchor of the documentation resolves, and every page or heading the code names exists.

Checked: the links of README.md, ARCHITECTURE.md and docs/*.md (a relative file must exist; an anchor must be the
GitHub id of a heading of its page), the repository files and ``common.`` modules these pages name in inline code
(``common/inference/live.py``, ``common.utils.fileio.atomic_write``), and, in the code (``*.py``, ``scripts/*.sh``), every ``docs/<page>.md``
(with its ``#anchor`` if any) and every heading named in quotes after a page (``README, "Joint conventions"``,
``docs/live.md, 'Lengths'``), as error messages and help texts write them.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_DIRS_SKIPPED = {".git", "data", "checkpoint", "output", "3D_prediction", ".venv", "venv", "build"}

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"`[^`]*`")
# Inline code naming a file of this repository (folders of the repository only: bare names such as the authors'
# ``utils/arguments.py`` are not ours) or a module of ``common`` (an attribute may follow the module).
_REPO_PATH = re.compile(r"`((?:common|bench|scripts|tests|data/bone_length)/[\w./-]*\w)(?::\w+)?`")
_MODULE = re.compile(r"`(common(?:\.\w+)+)`")
# A page named in the code, with an optional #anchor or a quoted heading after it.
_CODE_PAGE = re.compile(r"(?P<page>README(?:\.md)?|ARCHITECTURE\.md|docs/[\w.-]+\.md)(?P<anchor>#[\w-]+)?"
                        r"(?:(?:'s)?(?:,?\s+|,)\(?[\"'](?P<heading>[^\s\"'][^\"'\n]{1,79}?)[\"'])?")


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _prose_lines(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation except ``-`` and ``_`` removed, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def headings(path: Path) -> list[str]:
    """The heading texts of a markdown page, in order (inline code marks removed)."""
    found = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if match:
            found.append(match.group(2).replace("`", ""))
    return found


def anchors(path: Path) -> set[str]:
    """The GitHub ids of a page's headings (a repeated heading gets ``-1``, ``-2``, ...)."""
    seen: dict[str, int] = {}
    ids = set()
    for heading in headings(path):
        base = slug(heading)
        count = seen.get(base, 0)
        ids.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return ids


def broken_links(page: Path) -> list[str]:
    """Relative links and anchors of ``page`` that do not resolve, as ``"page: target (why)"``."""
    problems = []
    for line in _prose_lines(page.read_text(encoding="utf-8")):
        for target in _LINK.findall(_CODE_SPAN.sub("", line)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            where = f"{_shown(page)}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where} (no heading with that anchor)")
    return problems


def missing_names(page: Path) -> list[str]:
    """Repository files and ``common`` modules named in ``page``'s inline code that do not exist."""
    problems = []
    text = "\n".join(_prose_lines(page.read_text(encoding="utf-8")))
    for name in _REPO_PATH.findall(text):
        if not (ROOT / name).exists():
            problems.append(f"{_shown(page)}: {name} (no such file)")
    for dotted in _MODULE.findall(text):
        parts = dotted.split(".")
        # the longest prefix that is a module or package; what follows it: one name that its file mentions
        files = [(n, f) for n in range(len(parts), 1, -1)
                 for f in (ROOT.joinpath(*parts[:n]).with_suffix(".py"), ROOT.joinpath(*parts[:n]) / "__init__.py")
                 if f.is_file()]
        n, source = files[0] if files else (0, None)
        rest = parts[n:]
        if source is None or len(rest) > 1 or (rest and not re.search(rf"\b{rest[0]}\b", source.read_text())):
            problems.append(f"{_shown(page)}: {dotted} (no such module)")
    return problems


def _heading_exists(page: Path, name: str) -> bool:
    """``name`` is a heading of ``page``, or the start of one (``In the wild`` for ``In the wild: lifters, ...``)."""
    return any(h == name or h.startswith((name + ":", name + " (")) for h in headings(page))


def broken_code_references(path: Path, text: str) -> list[str]:
    """Pages, anchors and quoted headings named in a code file's text that do not exist."""
    problems = []
    for match in _CODE_PAGE.finditer(text):
        name = match["page"]
        page = ROOT / (name if name.endswith(".md") else name + ".md")
        line = text.count("\n", 0, match.start()) + 1
        where = f"{_shown(path)}:{line}: {match.group(0)}"
        if not page.exists():
            problems.append(f"{where} (no such page)")
            continue
        if match["anchor"] and match["anchor"][1:] not in anchors(page):
            problems.append(f"{where} (no heading with that anchor)")
        if match["heading"] and not _heading_exists(page, match["heading"]):
            problems.append(f"{where} (no such heading)")
    return problems


def _code_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if path.suffix not in (".py", ".sh") or set(rel.parts) & CODE_DIRS_SKIPPED or path.name == Path(__file__).name:
            continue
        files.append(path)
    return files


def test_the_documentation_pages_exist():
    assert (ROOT / "docs").is_dir() and len(DOC_PAGES) > 2


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_anchors_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_and_modules_named_in_the_pages_exist(page):
    assert missing_names(page) == []


def test_pages_and_headings_named_in_the_code_exist():
    problems = [p for path in _code_files() for p in broken_code_references(path, path.read_text(encoding="utf-8"))]
    assert problems == []


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_the_checker_finds_what_is_broken(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title: one `two`\n\n## Same\n\n## Same\n\n```\n# not a heading [x](gone.md)\n```\n"
                    "[ok](#title-one-two) [ok](#same-1) [bad](#same-2) [gone](gone.md) [web](https://example.org)\n"
                    "`[code](gone.md)` [self](page.md#same)\n", encoding="utf-8")
    assert anchors(page) == {"title-one-two", "same", "same-1"}
    problems = broken_links(page)
    assert len(problems) == 2
    assert any("#same-2" in p for p in problems) and any("gone.md (no such file)" in p for p in problems)

    names = tmp_path / "names.md"
    names.write_text("`common/core/bones.py` `common/nowhere.py` `utils/arguments.py` `common.core.bones.bone_lengths`"
                     " `common.core.gone` `common/inference/lifters/__init__.py:LIFTERS`\n", encoding="utf-8")
    assert [p.split(": ")[1] for p in missing_names(names)] == ["common/nowhere.py (no such file)",
                                                                "common.core.gone (no such module)"]

    code = ('raise UserError("see docs/in_the_wild.md, \'Joint conventions\'")\n'
            '# README, "No such heading"; docs/nowhere.md; docs/live.md#no-anchor; README\'s "Human3.6M"\n')
    found = broken_code_references(tmp_path / "x.py", code)
    assert [p.split(" (")[-1] for p in found] == ["no such heading)", "no such page)", "no heading with that anchor)"]
