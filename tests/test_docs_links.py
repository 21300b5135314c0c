"""Every relative link in the README and docs/ resolves inside the repository
(a clone has nothing outside it)."""

from __future__ import annotations

import re

import pytest

from .support import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) and [text]: target; images too.
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]]+\]:\s*(\S+)", re.M)


def relative_links(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks are not links
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#"):
            yield target


def test_the_architecture_document_is_in_the_repository_and_linked():
    assert (REPO / "docs" / "ARCHITECTURE.md").is_file()
    assert "docs/ARCHITECTURE.md" in list(relative_links(REPO / "README.md"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(doc):
    links = list(relative_links(doc))
    for target in links:
        resolved = (doc.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(REPO.resolve()), f"{doc.name}: {target} leaves the repository"
        assert resolved.exists(), f"{doc.name}: {target} does not exist"
    assert "../shared" not in doc.read_text(), f"{doc.name} points outside the repository"
