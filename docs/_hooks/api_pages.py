"""MkDocs hook: the API pages follow each subpackage's public names.

An API page holds marker lines such as ``<!-- api trim_pomdp.routers -->`` (optionally ``level=3``). Each marker
becomes the subpackage's docstring and one mkdocstrings block per name of its ``__all__``, pointing at the module
that defines the name. A public name is rendered once, on the page of the most specific subpackage that exports
it; the other pages that export it link there. So a name that moves to another module, or joins or leaves
``__all__``, needs no edit of the docs.

A subpackage without ``__all__`` is documented through its public submodules (their ``__all__``, or the classes
and functions they define).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

MARKER = re.compile(r"^<!-- api (?P<module>[\w.]+)(?: level=(?P<level>\d))? -->$", re.MULTILINE)
PACKAGE = "trim_pomdp"


@dataclass
class _Section:
    module: str
    level: int
    objects: list[tuple[str, str]] = field(default_factory=list)  # (public name, identifier)
    constants: list[tuple[str, str]] = field(default_factory=list)  # (public name, value repr)


#: identifier -> module of the marker whose page renders it in full
_home: dict[str, str] = {}


@dataclass(frozen=True)
class _Unimported:
    """A lazily exported name whose module needs an extra that is not installed (griffe reads it statically)."""

    identifier: str


def _lookup(module: ModuleType, name: str) -> Any:
    try:
        return getattr(module, name)
    except ImportError:
        target = getattr(module, "_LAZY", {}).get(name)
        if target is None:
            raise
        path = target if target.startswith(f"{PACKAGE}.") else f"{module.__name__}.{target}"
        return _Unimported(f"{path}.{name}")


def _public_names(module: ModuleType) -> list[tuple[str, Any]]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return [(name, _lookup(module, name)) for name in names]
    found: list[tuple[str, Any]] = []
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.startswith("_"):
            continue
        sub = importlib.import_module(f"{module.__name__}.{info.name}")
        sub_names = getattr(sub, "__all__", None)
        if sub_names is None:
            sub_names = [
                name
                for name, obj in vars(sub).items()
                if not name.startswith("_")
                and (inspect.isclass(obj) or inspect.isfunction(obj))
                and obj.__module__ == sub.__name__
            ]
        found.extend((name, getattr(sub, name)) for name in sub_names)
    return found


def _identifier(name: str, obj: Any) -> str | None:
    if isinstance(obj, _Unimported):
        return obj.identifier
    if inspect.ismodule(obj):  # a submodule that shadows a lazily exported function of the same name
        obj = getattr(obj, name, None)
    if callable(obj) and hasattr(obj, "__wrapped__"):  # functools.lru_cache and other wrappers
        obj = inspect.unwrap(obj)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return None
    module = getattr(obj, "__module__", "") or ""
    if not module.startswith(PACKAGE):
        return None
    return f"{module}.{obj.__qualname__}"


def _section(module_name: str, level: int) -> _Section:
    section = _Section(module_name, level)
    for name, obj in _public_names(importlib.import_module(module_name)):
        identifier = _identifier(name, obj)
        if identifier is None:
            value = repr(obj)
            section.constants.append((name, value if len(value) <= 90 else value[:87] + "..."))
        else:
            section.objects.append((name, identifier))
    return section


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x != y:
            break
        n += 1
    return n


def on_files(files: Any, config: Any) -> Any:
    """Decide, before any page is rendered, which marker renders each public object in full."""
    _home.clear()
    best: dict[str, tuple[int, str]] = {}
    for file in files.documentation_pages():
        for match in MARKER.finditer(file.content_string):
            section = _section(match["module"], int(match["level"] or 2))
            for _, identifier in section.objects:
                score = _shared_prefix(identifier, section.module)
                if identifier not in best or score > best[identifier][0]:
                    best[identifier] = (score, section.module)
    _home.update({identifier: module for identifier, (_, module) in best.items()})
    return files


def _render(section: _Section) -> str:
    level = section.level
    lines = [
        f"::: {section.module}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "",
    ]
    elsewhere = []
    for name, identifier in section.objects:
        if _home.get(identifier) != section.module:
            elsewhere.append(f"- [`{name}`][{identifier}]")
            continue
        lines += [f"::: {identifier}", "    options:", f"      heading_level: {level}", ""]
    if section.constants:
        lines += ["", f"{'#' * level} Constants", "", "| name | value |", "| --- | --- |"]
        for name, value in section.constants:
            cell = value.replace("|", "\\|").replace("`", "'")
            lines.append(f"| `{name}` | `{cell}` |")
        lines.append("")
    if elsewhere:
        lines += ["", f"{'#' * level} Also exported here", "", *elsewhere, ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return MARKER.sub(lambda m: _render(_section(m["module"], int(m["level"] or 2))), markdown)
