"""The documentation runs as written: every ```python block of the README and the manual (docs/), each in an empty
working folder; output is shown in ```text blocks, which are not run. The README stays the front door."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)


def _blocks(path: Path) -> list[tuple[str, str]]:
    """(language, code) of each fenced block of a Markdown file, in order."""
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(path.read_text())]


EXAMPLES = [(path.relative_to(ROOT).as_posix(), index, code)
            for path in PAGES
            for index, code in enumerate(code for language, code in _blocks(path) if language == "python")]


def test_the_readme_and_the_manual_have_python_examples():
    files = {name for name, _, _ in EXAMPLES}
    assert "README.md" in files and len(files) >= 6, files


@pytest.mark.parametrize(("page", "index", "code"), EXAMPLES, ids=[f"{name}-{index}" for name, index, _ in EXAMPLES])
def test_python_example_runs(page, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page} example {index}", "exec"), {"__name__": "docs_example"})


@pytest.mark.parametrize("path", PAGES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_code_block_names_its_language(path):
    """A bare ``` block could be code nobody runs: examples are ```python, output ```text, commands ```bash."""
    bare = [code.splitlines()[0] if code else "" for language, code in _blocks(path) if not language]
    assert not bare, f"{path.name}: blocks without a language, starting {bare}"


def test_the_readme_is_the_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move the detail into docs/"


DOCUMENTED_CLASSES = {
    "reid_sdk/inference/extractor.py": "FeatureExtractor",
    "reid_sdk/tracks/aggregator.py": "TrackletAggregator",
    "reid_sdk/gallery/gallery.py": "Gallery",
    "reid_sdk/search/index.py": "ReIDIndex",
    "reid_sdk/training/trainer.py": "Trainer",
}


@pytest.mark.parametrize(("module", "name"), DOCUMENTED_CLASSES.items(), ids=DOCUMENTED_CLASSES.values())
def test_main_classes_have_an_example_that_parses(module, name):
    """Each main class's docstring has a Google-style ``Example:`` section with a ```python block that compiles."""
    tree = ast.parse((ROOT / module).read_text())
    docstring = next(ast.get_docstring(node) for node in ast.walk(tree)
                     if isinstance(node, ast.ClassDef) and node.name == name)
    assert re.search(r"^Example:$", docstring, flags=re.M), f"{name} has no 'Example:' section"
    code = re.search(r"```python\n(.*?)^\s*```", docstring, flags=re.S | re.M)
    assert code, f"{name}'s example is not a ```python block"
    compile(textwrap.dedent(code.group(1)), f"{name} docstring example", "exec")
