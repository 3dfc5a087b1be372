"""mkdocs hook: the benchmark results in ``benchmarks/results/*.json`` become part of the site.

The JSON files live outside ``docs/``. This hook adds each one to the site at ``benchmarks/results/NAME.json``
and rewrites the pages' links to them, so that one link works both on GitHub and in the built manual:

* in the Markdown, a page links to the file relative to itself in the repository, e.g.
  ``[JSON](../benchmarks/results/rerank_eval.json)`` from ``docs/results.md``;
* in the site, that link is pointed at the copy this hook added, and ``mkdocs build --strict`` checks it
  like any other link: a link to a JSON file that does not exist fails the build.

A figure the docs quote from a results file is written as a macro and read from the JSON when the site is built,
so that it cannot drift from the measurement::

    {{ result("extract_throughput_cpu.json", "target.batch16.speedup", ".1f") }}            -> 8.3
    {{ result("extract_throughput_cpu.json", "trained_model.backends.onnxruntime int8.mAP", ".2f", scale=100) }}
                                                                                                -> 18.99
    {{ result("rerank_eval.json", "results.re-ranking (k1=20, k2=6, lambda=0.3).mAP", ".3f") }}  -> 0.203
    {{ result("extract_throughput_cpu.json", "runs[backend=torch fp32,batch_size=16].crops_per_s", ".1f",
              per="runs[backend=onnxruntime fp32,batch_size=16].crops_per_s") }}                  -> 0.2

The arguments: the file in ``benchmarks/results/``; a dotted key path (keys may hold dots and spaces: each step
is the longest key that the rest of the path starts with), where ``NAME[field=value,...]`` picks the one element of
the list ``NAME`` whose fields equal those values (compared as text) and ``NAME[3]`` the fourth;
a Python format spec (default: the value as is); ``per="other.key"`` divides by that figure of the same file
(ratios, speed-ups); ``scale=`` multiplies a number first (fractions as percent).
A missing file, key or list element, more than one matching element, or a malformed macro fails the build.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

RESULTS = "benchmarks/results"
# a Markdown link target that climbs out of docs/ into benchmarks/results/: ](../benchmarks/results/x.json)
_LINK = re.compile(r"\]\(((?:\.\./)+" + re.escape(RESULTS) + r"/[^)#\s]+\.json)")
# {{ result("file.json", "key.path", ".2f", scale=100) }}
_FIELDS = re.compile(r",(?=\s*\w+=)")  # [a=x, y,b=z]: fields split at a comma before "name=", values may hold commas
MACRO = re.compile(r"\{\{\s*(result.*?)\s*\}\}")


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
    """Fill in the ``{{ result(...) }}`` figures; point each repository-relative link to a results file at that
    file's copy in the site."""
    page_dir = posixpath.dirname(page.file.src_uri)

    def site_link(match: re.Match) -> str:
        in_repository = posixpath.normpath(posixpath.join("docs", page_dir, match.group(1)))
        if not in_repository.startswith(RESULTS + "/"):
            return match.group(0)  # not a results file after all: leave it for mkdocs to judge
        return "](" + posixpath.relpath(in_repository, page_dir or ".")

    markdown = render_results(markdown, _repository_root(config) / RESULTS, page.file.src_uri)
    return _LINK.sub(site_link, markdown)


@lru_cache(maxsize=None)
def _load(path: Path, modified_ns: int) -> Any:
    """A results file's content, read once per version of the file (``mkdocs serve`` rebuilds in one process)."""
    return json.loads(path.read_text())


def _pick(items: Any, name: str, selector: str) -> Any:
    """The element of the list ``items`` that ``[selector]`` names: an index, or ``field=value,...`` (one match)."""
    if not isinstance(items, list):
        raise KeyError(f"{name!r} is not a list")
    if selector.strip().isdigit():
        if int(selector) >= len(items):
            raise KeyError(f"{name!r} has {len(items)} elements, not {int(selector) + 1}")
        return items[int(selector)]
    parts = [part.split("=", 1) for part in _FIELDS.split(selector)]
    if any(len(part) != 2 for part in parts):
        raise KeyError(f"malformed selector [{selector}]: write [field=value,...]")
    found = [item for item in items if isinstance(item, dict)
             and all(field.strip() in item and str(item[field.strip()]) == text.strip() for field, text in parts)]
    if len(found) != 1:
        raise KeyError(f"{len(found)} elements of {name!r} match [{selector}], not 1")
    return found[0]


def _lookup(value: Any, key: str) -> Any:
    """The value at a dotted ``key``; a step is the longest key of the object there that the rest of the path
    starts with, so keys that hold dots or spaces (``re-ranking (lambda=0.3)``) need no quoting."""
    rest, name = key, "the file"
    while rest:
        if rest.startswith("["):
            close = rest.find("]")
            if close < 0:
                raise KeyError(f"malformed selector {rest!r}: no closing ]")
            value, rest = _pick(value, name, rest[1:close]), rest[close + 1 :]
        elif isinstance(value, dict):
            steps = [step for step in value if rest == step or rest.startswith((step + ".", step + "["))]
            if not steps:
                raise KeyError(f"no key {rest.split('.')[0].split('[')[0]!r}")
            name = max(steps, key=len)
            value, rest = value[name], rest[len(name) :]
        else:
            raise KeyError(f"{name!r} holds {type(value).__name__}, not an object with {rest!r}")
        rest = rest[1:] if rest.startswith(".") else rest
    return value


def result(results_dir: Path, file: str, key: str, spec: str = "", scale: float | None = None,
           per: str | None = None) -> str:
    """The figure at ``key`` in ``results_dir / file``, divided by the one at ``per`` when given (a ratio, such
    as a speed-up), multiplied by ``scale`` and formatted with ``spec``."""
    path = results_dir / file
    if "/" in file or not path.is_file():
        raise KeyError(f"no results file {RESULTS}/{file}")
    content = _load(path.resolve(), path.stat().st_mtime_ns)
    value = _lookup(content, key)
    if per is not None:
        value = value / _lookup(content, per)
    if scale is not None:
        value = value * scale
    return format(value, spec)


def render_results(markdown: str, results_dir: Path, where: str = "") -> str:
    """Replace every ``{{ result(...) }}`` macro of ``markdown`` by its figure; a bad one raises PluginError."""

    def figure(match: re.Match) -> str:
        try:
            call = ast.parse(match.group(1), mode="eval").body
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "result"):
                raise ValueError("not a result(...) call")
            args = [ast.literal_eval(arg) for arg in call.args]
            kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
            return result(results_dir, *args, **kwargs)
        except (SyntaxError, ValueError, TypeError, KeyError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            raise PluginError(f"{where}: {match.group(0)}: {message}") from None

    return MACRO.sub(figure, markdown)
