"""Every console script's ``--help``: plain text (no RST markup) and no ``(default: None)``."""

from __future__ import annotations

import argparse
import importlib
import re
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SCRIPTS = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]


def _helps(parser: argparse.ArgumentParser) -> list[str]:
    """The help text of ``parser`` and of every sub-command below it."""
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts.extend(_helps(sub))
    return texts


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_is_plain_text_with_meaningful_defaults(script, capsys):
    module = importlib.import_module(SCRIPTS[script].partition(":")[0])
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    texts = [capsys.readouterr().out, *_helps(module.build_parser())]
    assert texts[0].startswith(f"usage: {script}")
    for text in texts:
        assert "(default: None)" not in text and "``" not in text and ":mod:" not in text, text
        assert "(default: False)" not in text, text


def test_defaults_that_mean_something_are_shown(capsys, monkeypatch):
    from reid_sdk.cli.index import build_parser

    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help to the terminal: one line per option here
    build = _helps(build_parser())[1]  # reid-index build
    assert "(default: 64)" in build and "(default: folder)" in build
    assert re.search(r"--overwrite +replace a gallery already at --out\n", build)  # a flag: no default shown
