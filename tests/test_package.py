"""Package-level guarantees: light import, layering, no unpickling, CLI entry point."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import trim_pomdp
from trim_pomdp.cli import COMMANDS, main

PACKAGE_DIR = Path(trim_pomdp.__file__).parent
HEAVY = [
    "torch",
    "transformers",
    "vllm",
    "anthropic",
    "juliacall",
    "matplotlib",
    "openai",
    "stable_baselines3",
]


def test_import_is_light():
    code = (
        "import sys, trim_pomdp, trim_pomdp.cli\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted(m for m in heavy if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import trim_pomdp pulled in heavy modules: {out.stdout.strip()}"


def _internal_imports(path: Path) -> set[str]:
    """Sub-packages of trim_pomdp that a module imports (absolute or relative), as top-level names."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PACKAGE_DIR).parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "trim_pomdp" and len(parts) > 1:
                    found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "trim_pomdp":
                    found.add(parts[1] if len(parts) > 1 else "")
            else:
                base = list(rel[:-1])[: len(rel) - node.level]
                target = base + ((node.module or "").split(".") if node.module else [])
                if target:
                    found.add(target[0])
                else:  # "from .. import x" at package root: the names are the sub-modules
                    found.update(alias.name for alias in node.names)
    found.discard("")
    return {name.removesuffix(".py") for name in found}


# The layers, bottom to top. A module may import its own sub-package and the layers below its own (the base
# modules may also import each other).
LAYERS: list[set[str]] = [
    {"exceptions", "_version", "constants", "types", "_internal", "registry"},  # base: no numpy maths
    {"datasets"},  # reading data files and hubs
    {"solvers", "observation_models", "prm"},  # generic: know nothing of TRIM, nor of each other
    {"pomdp"},  # the TRIM-POMDP
    {"routers"},  # no I/O, never call a model
    {"evaluation", "generation"},  # simulator and sweeps; the live loop (siblings: neither imports the other)
    {"serve"},  # the HTTP endpoint over the live loop
    {"cli"},
    {"__main__"},
]


def _layer(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name in layer:
            return i
    raise AssertionError(f"trim_pomdp/{name} is in no layer of tests/test_package.py: add it to LAYERS")


def test_every_module_imports_only_its_own_package_and_lower_layers():
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR).parts
        own = parts[0].removesuffix(".py")
        if own == "__init__":  # the package root re-exports lazily (checked by test_import_is_light)
            continue
        level = _layer(own)
        for imported in _internal_imports(path) - {own}:
            assert _layer(imported) < level or level == 0 == _layer(imported), (
                f"{'/'.join(parts)} imports trim_pomdp.{imported}, which is not below its layer"
            )


# Modules that unpickle whatever file they are handed (a pickle runs code while it loads).
UNPICKLING_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve"}
# Known exceptions, by (module, call). None: the PPO checkpoints and TRIM-Seq routers, which were stable-baselines3
# zips read with PPO.load (an unpickler), are plain arrays now (routers/rl/checkpoint.py).
UNPICKLING_ALLOWED: set[tuple[str, str]] = set()


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _keyword_is(call: ast.Call, name: str, value: object) -> bool | None:
    """Whether keyword ``name`` is the constant ``value`` (``None`` when it is not given)."""
    for kw in call.keywords:
        if kw.arg == name:
            return isinstance(kw.value, ast.Constant) and kw.value.value is value
    return None


def _unpickling(path: Path) -> set[str]:
    """What in a module can unpickle: imports of pickling modules and loads that allow pickles."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(f"import {a.name}" for a in node.names if a.name.split(".")[0] in UNPICKLING_MODULES)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if (node.module or "").split(".")[0] in UNPICKLING_MODULES:
                found.add(f"from {node.module} import")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("np.load", "numpy.load") and _keyword_is(node, "allow_pickle", False) is False:
                found.add("np.load(allow_pickle=...)")  # numpy's default is False; anything else may unpickle
            elif name == "torch.load" and not _keyword_is(node, "weights_only", True):
                found.add("torch.load")
            elif name.endswith(("PPO.load", "load_from_zip_file")):
                found.add("PPO.load")
    return found


def test_no_module_unpickles():
    for path in PACKAGE_DIR.rglob("*.py"):
        rel = path.relative_to(PACKAGE_DIR).as_posix()
        for what in _unpickling(path):
            assert (rel, what) in UNPICKLING_ALLOWED, (
                f"trim_pomdp/{rel}: {what} can unpickle a file (run code)"
            )


def test_cli_version_and_help():
    runner = CliRunner()
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and trim_pomdp.__version__ in result.output
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_every_public_name_resolves():
    for name in trim_pomdp.__all__:
        assert getattr(trim_pomdp, name) is not None, name
    assert "BeliefRouter" in dir(trim_pomdp)


def test_exported_names_survive_importing_every_submodule():
    """A lazily exported name equal to a submodule's name would be shadowed by the module once it is imported."""
    import importlib
    import pkgutil
    import types

    infos = [
        i
        for i in pkgutil.walk_packages(trim_pomdp.__path__, "trim_pomdp.")
        if not i.name.endswith("__main__")
    ]
    for info in infos:
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra is missing
            continue
    for info in infos:
        if not info.ispkg or info.name not in sys.modules:
            continue
        pkg = sys.modules[info.name]
        for name in getattr(pkg, "__all__", ()):
            value = getattr(pkg, name)
            assert not isinstance(value, types.ModuleType), f"{info.name}.{name} is shadowed by its submodule"
