"""Figures the docs quote from ``benchmarks/results/*.json`` are read from the JSON when the site is built.

The macro ``{{ result("file.json", "key.path", ".2f") }}`` is filled in by the mkdocs hook
``docs/hooks/benchmark_results.py``; these tests check that every macro of the docs resolves (a missing file or key
fails the build), that the hook reads what the JSON holds, and that the results tables, the tables right after a
paragraph linking a results JSON, quote their figures through the macro rather than as copied numbers.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGE_IDS = [path.relative_to(ROOT).as_posix() for path in PAGES]


def _hook():
    spec = importlib.util.spec_from_file_location("benchmark_results", ROOT / "docs" / "hooks" / "benchmark_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _hook()


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_every_result_macro_resolves(path):
    """Rendering raises PluginError (the build fails) for a macro whose file, key or format is wrong."""
    rendered = hook.render_results(path.read_text(), RESULTS, path.name)
    assert "{{ result" not in rendered and "{{result" not in rendered


def test_a_macro_reads_the_json(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({
        "machine": {"cpu count": 2},
        "runs": [{"backend": "torch fp32", "batch_size": 1, "ms": 125.43},
                 {"backend": "torch fp32", "batch_size": 16, "ms": 80.0},
                 {"backend": "openvino int8", "batch_size": 16, "ms": 5.0}],
        "mAP": 0.190481,
        "results": {"re-ranking (k1=20, lambda=0.3)": {"mAP": 0.2027}, "re-ranking": {"mAP": 0.1}},
        "configs": [{"name": "centering, 2 epochs", "seed": 0, "rank1": 0.25}, {"name": "centering", "seed": 0}],
    }))
    markdown = ('| a | {{ result("bench.json", "machine.cpu count") }} | '
                '{{ result("bench.json", "runs[backend=torch fp32,batch_size=16].ms", ".1f") }} | '
                '{{result("bench.json", "runs[2].backend")}} | {{ result("bench.json", "mAP", ".2f", scale=100) }} |')
    assert hook.render_results(markdown, tmp_path) == "| a | 2 | 80.0 | openvino int8 | 19.05 |"
    # keys holding dots and spaces, selector values holding commas, a ratio of two figures
    assert hook.render_results('{{ result("bench.json", "results.re-ranking (k1=20, lambda=0.3).mAP") }} '
                               '{{ result("bench.json", "results.re-ranking.mAP") }} '
                               '{{ result("bench.json", "configs[name=centering, 2 epochs,seed=0].rank1") }} '
                               '{{ result("bench.json", "runs[2].ms", ".2f", per="runs[0].ms") }}',
                               tmp_path) == "0.2027 0.1 0.25 0.04"


@pytest.mark.parametrize(("macro", "problem"), [
    ('{{ result("missing.json", "a") }}', "no results file"),
    ('{{ result("../bench.json", "a") }}', "no results file"),
    ('{{ result("bench.json", "machine.cores") }}', "no key 'cores'"),
    ('{{ result("bench.json", "runs[backend=torch fp32].ms") }}', "2 elements of 'runs' match"),
    ('{{ result("bench.json", "runs[backend=tensorrt].ms") }}', "0 elements of 'runs' match"),
    ('{{ result("bench.json", "runs[5].ms") }}', "has 3 elements"),
    ('{{ result("bench.json", "machine[0]") }}', "is not a list"),
    ('{{ result("bench.json", "runs[torch].ms") }}', "malformed selector"),
    ('{{ result("bench.json", "mAP", "q") }}', "Unknown format code"),
    ('{{ result("bench.json", "mAP" }}', "never closed"),
    ('{{ result(open("bench.json"), "mAP") }}', "malformed node"),
    ('{{ results("bench.json", "mAP") }}', "not a result(...) call"),
])
def test_a_bad_macro_fails_the_build_naming_it(tmp_path, macro, problem):
    (tmp_path / "bench.json").write_text(json.dumps({
        "machine": {"cpu count": 2}, "mAP": 0.19,
        "runs": [{"backend": "torch fp32", "ms": 1.0}, {"backend": "torch fp32", "ms": 2.0}, {"backend": "x"}],
    }))
    with pytest.raises(PluginError) as error:
        hook.render_results(f"text {macro} text", tmp_path, "page.md")
    assert problem in str(error.value) and "page.md" in str(error.value) and macro in str(error.value)


# --- results tables quote their figures through the macro -------------------------------------------------------

JSON_LINK = re.compile(r"\]\((?:\.\./)+benchmarks/results/[^)\s]+\.json\)")
SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")
# what a cell may hold besides macros without being a copied figure: code spans, a target in parentheses, a shape
NOT_A_FIGURE = re.compile(r"\{\{\s*result\b.*?\}\}|`[^`]*`|\(target[^)]*\)|\b\d+ x \d+\b")


def results_tables(text: str) -> list[tuple[int, list[str]]]:
    """(line number, body rows) of each table whose preceding paragraph links a ``benchmarks/results`` JSON."""
    lines, tables, in_code = text.splitlines(), [], False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("|") or number + 1 >= len(lines) or not SEPARATOR.match(lines[number + 1]):
            continue
        if number > 0 and lines[number - 1].startswith("|"):
            continue  # a separator-like row inside a table
        before = number - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        paragraph = []
        while before >= 0 and lines[before].strip() and not lines[before].startswith("|"):
            paragraph.append(lines[before])
            before -= 1
        if not JSON_LINK.search("\n".join(paragraph)):
            continue
        end = number + 2
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        tables.append((number + 1, lines[number + 2:end]))
    return tables


def copied_figures(row: str) -> list[str]:
    """The cells of a table row, after the first (the row's label), that quote a figure outside a macro: a digit
    left once macros, code spans and ``(target ...)`` are taken out, unless what is left starts with a word (a
    cell of prose such as "cannot run: three 100,000² matrices" or "the whole distance (28.8 M pairs)")."""
    cells = [cell.strip() for cell in row.strip().strip("|").split("|")][1:]
    rest = [NOT_A_FIGURE.sub("", cell).strip().lstrip("*_ ") for cell in cells]
    return [cell for cell, text in zip(cells, rest) if re.search(r"\d", text) and not text[:1].isalpha()]


def test_the_table_check_finds_copied_figures():
    page = ("Measured ([JSON](../benchmarks/results/x.json)):\n\n"
            "| run | ms | note |\n| --- | --- | --- |\n"
            '| batch 16 | {{ result("x.json", "ms") }} | 12.5 (target <= 20) |\n'
            '| batch 1 | {{ result("x.json", "ms1") }} (`k=3`, 0.2x) | **3.1** |\n'
            "| batch 4 | prose with 4 numbers | 12 (0.5x) |\n"
            "| 3 x 3 | 3 x 3 convolutions | 7 % (1 x 1) |\n\n"
            "No JSON link before this one:\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n")
    (line, rows), = results_tables(page)
    assert line == 3 and [copied_figures(row) for row in rows] == [
        ["12.5 (target <= 20)"], ['{{ result("x.json", "ms1") }} (`k=3`, 0.2x)', "**3.1**"], ["12 (0.5x)"],
        ["7 % (1 x 1)"]]


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_results_tables_read_their_figures_from_the_json(path):
    copied = [(line, cell) for line, rows in results_tables(path.read_text()) for row in rows
              for cell in copied_figures(row)]
    assert not copied, (f"{path.name}: figures copied into a results table instead of "
                        f"{{{{ result(...) }}}} macros (table line, cell): {copied[:5]}")
