"""A griffe extension for the API reference (mkdocs.yml loads it; the site does not ship it).

The code's docstrings are written for Sphinx-style readers; mkdocstrings renders Markdown.
Two things would otherwise come out wrong:

- ``#:`` comments above a module or class attribute are its documentation (Sphinx's
  convention, used for constants such as ``COMMON_OPTIONS``); griffe only reads a string
  literal after the assignment. They become the attribute's docstring.
- Sphinx roles (``:class:`Row```, ``:meth:`~x.y.rollback```) would render as the role's
  name followed by code. They become plain code spans (`` `Row` ``, `` `rollback` ``).
- Doctest lines (``>>> ...``) would render as nested block quotes. They become ``pycon``
  code blocks; a paragraph ending in reST's ``::`` ends in ``:`` (the indented block after
  it is a code block in Markdown too).

Nothing in the code changes; this only shapes what the reference shows.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|data|attr|mod|exc|obj|const|ref):`~?([^`]+)`")


def _plain_roles(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        target = match.group(1)
        if "<" in target and target.endswith(">"):  # :ref:`text <target>`
            target = target.split("<", 1)[0].strip()
        return f"`{target}`"

    return _ROLE.sub(one, text)


def _doctest_fences(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    fenced = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        stripped = line.lstrip()
        if not fenced and (stripped.startswith(">>> ") or stripped == ">>>"):
            indent = line[: len(line) - len(stripped)]
            block: list[str] = []
            while index < len(lines) and lines[index].strip() and lines[index].startswith(indent):
                block.append(lines[index])
                index += 1
            out += [f"{indent}```pycon", *block, f"{indent}```"]
            continue
        out.append(line)
        index += 1
    return "\n".join(out)


_LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)


def _markdown(text: str) -> str:
    text = _plain_roles(text)
    if ">>>" in text:
        text = _doctest_fences(text)
    return _LITERAL_MARKER.sub(":", text)


def _comment_above(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above the attribute's first line, if any."""
    if obj.lineno is None or obj.filepath is None or isinstance(obj.filepath, list):
        return None
    try:
        lines = obj.lines_collection[obj.filepath]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    found: list[str] = []
    index = obj.lineno - 2  # the line above, 0-based
    while index >= 0:
        stripped = lines[index].strip()
        if not stripped.startswith("#:"):
            break
        found.append(stripped[2:].strip())
        index -= 1
    return "\n".join(reversed(found)) or None


class SphinxComments(griffe.Extension):
    """``#:`` comments as attribute docstrings; Sphinx roles, doctests and ``::`` made Markdown."""

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is None:
            text = _comment_above(attr)
            if text:
                attr.docstring = griffe.Docstring(_markdown(text), lineno=attr.lineno, parent=attr)

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _markdown(obj.docstring.value)
