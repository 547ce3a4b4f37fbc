"""Griffe extension: Sphinx roles and reST literal markers in docstrings, rendered for mkdocstrings.

The docstrings are numpydoc, written to read well in a terminal (``help()``) as well as in these pages. They
cross-reference with Sphinx roles (``:class:`~trim_pomdp.routers.base.Router```), which Markdown does not know.
This extension turns each role into a link to the object's API entry when that object is documented, and into
plain code otherwise (the link is *optional*, so a reference to a private helper never breaks the build), and
turns the reST ``::`` that introduces a literal block into a plain colon.

In a function that takes ``**kwargs``, the documented parameters that are not in its signature are keywords it
passes on; they move from "Parameters" to "Other Parameters", as numpydoc has it, so that the check of
"Parameters" against the signature (a stale name fails the strict build) stays on everywhere else.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\n", re.MULTILINE)
PARAMETERS = re.compile(r"^Parameters\n-{3,}\n", re.MULTILINE)
ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj):`(?P<tilde>~?)(?P<target>[^`<>]+)`")
LITERAL_INTRO = re.compile(r"(?<=\S)::(?=\n\n)")


def _identifier(obj: griffe.Object, target: str) -> str | None:
    if target.startswith("trim_pomdp."):
        return target
    head, _, rest = target.lstrip(".").partition(".")
    scopes = [obj, obj.parent, obj.module]
    for scope in scopes:
        if scope is None or not hasattr(scope, "members") or head not in scope.members:
            continue
        member = scope.members[head]
        base = member.target_path if isinstance(member, griffe.Alias) else member.path
        return f"{base}.{rest}" if rest else base
    return None


def _forwarded_to_other_parameters(text: str, known: set[str]) -> str:
    """Move the "Parameters" entries whose names are not in ``known`` to an "Other Parameters" section."""
    header = PARAMETERS.search(text)
    if header is None:
        return text
    following = SECTION.search(text, header.end())
    end = following.start() if following else len(text)
    entries: list[list[str]] = []
    for line in text[header.end() : end].splitlines(keepends=True):
        if line.strip() and not line[0].isspace():
            entries.append([line])
        elif entries:
            entries[-1].append(line)
        elif line.strip():
            return text  # a layout this does not know: leave it to the parser

    def names(entry: list[str]) -> list[str]:
        return [n.strip().lstrip("*") for n in entry[0].split(":")[0].split(",")]

    kept = [e for e in entries if any(n in known for n in names(e))]
    moved = [e for e in entries if not any(n in known for n in names(e))]
    if not moved:
        return text

    def block(group: list[list[str]]) -> str:
        return "".join("".join(e) for e in group).rstrip("\n") + "\n"

    parts = [text[: header.start()]]
    if kept:
        parts += ["Parameters\n----------\n", block(kept), "\n"]
    parts += ["Other Parameters\n----------------\n", block(moved), "\n" if following else "", text[end:]]
    return "".join(parts)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles into (optional) autorefs links before the docstrings are parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        if isinstance(obj, griffe.Function) and any(
            p.kind is griffe.ParameterKind.var_keyword for p in obj.parameters
        ):
            docstring.value = _forwarded_to_other_parameters(
                docstring.value, {p.name for p in obj.parameters}
            )
        if ":" not in docstring.value:
            return

        def replace(match: re.Match[str]) -> str:
            target = match["target"].strip()
            title = target.rsplit(".", 1)[-1] if match["tilde"] else target.lstrip(".")
            identifier = _identifier(obj, target)
            if identifier is None:
                return f"`{title}`"
            return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

        docstring.value = LITERAL_INTRO.sub(":", ROLE.sub(replace, docstring.value))
