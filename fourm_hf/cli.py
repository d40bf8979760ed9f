"""Command-line helpers shared by the scripts in examples/, training/ and modeling/: one help formatter, and help
texts for the options transformers' own argument dataclasses leave undocumented."""

from __future__ import annotations

import argparse
import re

__all__ = ["HelpFormatter", "fill_missing_help"]

# An `Args:` entry of a transformers docstring: "    name (`type`, *optional*, defaults to x):" then indented text.
_DOCSTRING_ENTRY = re.compile(r"^( +)(\w+) \([^\n]*\):\n((?:\1 +\S[^\n]*\n?)+)", re.MULTILINE)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks (usage examples) and shows every option's default."""


def fill_missing_help(parser: argparse.ArgumentParser, documented: type) -> argparse.ArgumentParser:
    """Give each option of `parser` without help text the first sentence of its field's entry in the docstring of
    `documented` (e.g. `TrainingArguments`, whose `Args:` section documents fields the parser leaves bare)."""
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"parser must be an argparse.ArgumentParser, got {type(parser).__name__}")
    if not isinstance(documented, type):
        raise TypeError(f"documented must be a class, got {type(documented).__name__}")
    entries = {}
    for match in _DOCSTRING_ENTRY.finditer(documented.__doc__ or ""):
        text = " ".join(match.group(3).split())
        entries.setdefault(match.group(2), re.split(r"(?<=\.)\s", text, maxsplit=1)[0])
    for action in parser._actions:
        if not action.help and action.dest in entries:
            action.help = entries[action.dest]
    return parser
