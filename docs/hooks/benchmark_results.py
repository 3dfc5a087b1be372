"""mkdocs hook: the benchmark results in ``benchmarks/results/*.json`` become part of the site.

The JSON files live outside ``docs/``. This hook adds each one to the site at ``benchmarks/results/NAME.json``
and rewrites the pages' links to them, so that one link works both on GitHub and in the built manual:

* in the Markdown, a page links to the file relative to itself in the repository, e.g.
  ``[JSON](../benchmarks/results/rerank_eval.json)`` from ``docs/results.md``;
* in the site, that link is pointed at the copy this hook added, and ``mkdocs build --strict`` checks it
  like any other link: a link to a JSON file that does not exist fails the build.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

RESULTS = "benchmarks/results"
# a Markdown link target that climbs out of docs/ into benchmarks/results/: ](../benchmarks/results/x.json)
_LINK = re.compile(r"\]\(((?:\.\./)+" + re.escape(RESULTS) + r"/[^)#\s]+\.json)")


def _repository_root(config) -> Path:
    return Path(config["docs_dir"]).resolve().parent


def on_files(files, config):
    """Add every ``benchmarks/results/*.json`` to the site, under the same path."""
    root = _repository_root(config)
    for path in sorted((root / RESULTS).glob("*.json")):
        files.append(File(f"{RESULTS}/{path.name}", src_dir=str(root), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    """Point each repository-relative link to a results file at that file's copy in the site."""
    page_dir = posixpath.dirname(page.file.src_uri)

    def site_link(match: re.Match) -> str:
        in_repository = posixpath.normpath(posixpath.join("docs", page_dir, match.group(1)))
        if not in_repository.startswith(RESULTS + "/"):
            return match.group(0)  # not a results file after all: leave it for mkdocs to judge
        return "](" + posixpath.relpath(in_repository, page_dir or ".")

    return _LINK.sub(site_link, markdown)
