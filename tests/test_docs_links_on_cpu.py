"""Every document a README points a reader to is in this repository: relative links and the
documents named in backticks (``DESIGN.md``, ``recipes/README.md``; not outputs such as
``report.md``) resolve, beside the README or from the repository root."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
READMES = [REPO / "README.md", REPO / "examples" / "README.md", *sorted((REPO / "recipes").glob("**/README.md"))]


def pointed_documents(markdown: str) -> set[str]:
    """Relative link targets (anchors dropped) and backticked document names of ``markdown``: an
    upper-case ``*.md`` name or a path to one.

    >>> sorted(pointed_documents("[a](../a.md#x), `DESIGN.md`, `report.md`, [b](https://x.org/b.md)"))
    ['../a.md', 'DESIGN.md']
    """
    links = {target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", markdown)}
    links = {link for link in links if link and not re.match(r"[a-z]+:", link)}
    return links | set(re.findall(r"`((?:[\w.-]+/)+[\w.-]+\.md|[A-Z][\w.-]*\.md)`", markdown))


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_document_a_readme_points_to_exists_in_the_repository(readme):
    missing = [
        name
        for name in sorted(pointed_documents(readme.read_text(encoding="utf-8")))
        if not ((readme.parent / name).exists() or (REPO / name).exists())
    ]
    assert missing == [], f"{readme.relative_to(REPO)} points to files this repository does not have: {missing}"
