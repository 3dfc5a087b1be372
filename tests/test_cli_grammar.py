"""One CLI grammar: every console script's parser, and each of its sub-commands, spells the shared options the same
way (``--model``, ``-k/--top-k``, ``--progress``, ``--device``, ``--log-level``, ``--json``); old spellings parse,
hidden, with a deprecation line."""

from __future__ import annotations

import argparse
import importlib
import tomllib
from pathlib import Path

import pytest

from reid_sdk._utils.progress import PROGRESS_MODES
from reid_sdk.cli.common import LOG_LEVELS

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SCRIPTS = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
# the commands that print results: each has --json
PRINTS_RESULTS = {"reid-eval", "reid-index build", "reid-index search", "reid-index ingest", "reid-index match",
                  "reid-adapt"}


def _commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """(command name, parser) of every console script and of each of its sub-commands."""
    found = []

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(f"{name} {sub_name}", sub)

    for script, target in sorted(SCRIPTS.items()):
        walk(script, importlib.import_module(target.partition(":")[0]).build_parser())
    return found


COMMANDS = _commands()


def _visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Each visible option string of ``parser`` -> its action."""
    return {option: action for action in parser._actions if action.help is not argparse.SUPPRESS
            for option in action.option_strings}


@pytest.mark.parametrize("name, parser", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_shared_options_have_one_spelling(name, parser):
    visible = _visible(parser)
    assert visible["--log-level"].choices == LOG_LEVELS
    for old in ("--checkpoint", "--no-progress"):
        assert old not in visible, f"{name}: {old} is an old spelling"
    model = [action for action in parser._actions if action.dest == "model" and action.option_strings
             and action.help is not argparse.SUPPRESS]
    positional_models = [action for action in parser._actions if not action.option_strings
                         and action.dest in ("model", "checkpoint") and action.help is not argparse.SUPPRESS]
    assert not positional_models, f"{name}: the model is --model, not positional"
    assert all(action.option_strings == ["--model"] for action in model), name
    if "-k" in visible or "--top-k" in visible:
        assert visible["-k"] is visible["--top-k"] and visible["-k"].dest == "top_k", name
    if "--progress" in visible:
        assert tuple(visible["--progress"].choices) == PROGRESS_MODES, name
    if "--device" in visible:
        assert visible["--device"].choices is None, f"{name}: --device takes cuda:N too"
    if name in PRINTS_RESULTS:
        assert "--json" in visible, f"{name} prints results: it needs --json"


def test_every_command_that_prints_results_exists():
    assert PRINTS_RESULTS <= {name for name, _ in COMMANDS}


@pytest.mark.parametrize("name, old, new", [
    ("reid-eval", ["--checkpoint", "m.pt"], ["--model", "m.pt"]),
    ("reid-index ingest", ["--no-progress"], ["--progress", "none"]),
])
def test_old_spellings_parse_like_the_new_with_a_deprecation_line(name, old, new, capsys):
    script, _, sub = name.partition(" ")
    parser = dict(COMMANDS)[script]
    prefix = [sub] if sub else []
    required = {"reid-eval": ["--data", "d", "--format", "market1501"],
                "reid-index ingest": ["--model", "m.pt", "--gallery", "g", "--site", "s"]}[name]
    with_old = vars(parser.parse_args([*prefix, *required, *old]))
    capsys.readouterr()
    with_new = vars(parser.parse_args([*prefix, *required, *new]))
    assert with_old == with_new
    assert "deprecated" not in capsys.readouterr().err
    parser.parse_args([*prefix, *required, *old])
    err = capsys.readouterr().err
    assert f"{old[0]} is deprecated" in err and f"use {' '.join(new[:1])}" in err


def test_log_level_is_accepted_after_a_sub_command_and_defaults_to_info():
    parser = dict(COMMANDS)["reid-index"]
    base = ["search", "--gallery", "g", "--model", "m.pt", "q.jpg"]
    assert parser.parse_args(base).log_level == "info"
    assert parser.parse_args([*base, "--log-level", "debug"]).log_level == "debug"
    assert parser.parse_args(["--log-level", "warning", *base]).log_level == "warning"
