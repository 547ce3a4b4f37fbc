"""Griffe extension: Sphinx roles and reST literal markers in docstrings, rendered for mkdocstrings.

The docstrings are numpydoc, written to read well in a terminal (``help()``) as well as in these pages. They
cross-reference with Sphinx roles (``:class:`~trim_pomdp.routers.base.Router```), which Markdown does not know.
This extension turns each role into a link to the object's API entry when that object is documented, and into
plain code otherwise (the link is *optional*, so a reference to a private helper never breaks the build), and
turns the reST ``::`` that introduces a literal block into a plain colon.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

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


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles into (optional) autorefs links before the docstrings are parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None or (":" not in docstring.value):
            return

        def replace(match: re.Match[str]) -> str:
            target = match["target"].strip()
            title = target.rsplit(".", 1)[-1] if match["tilde"] else target.lstrip(".")
            identifier = _identifier(obj, target)
            if identifier is None:
                return f"`{title}`"
            return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

        docstring.value = LITERAL_INTRO.sub(":", ROLE.sub(replace, docstring.value))
