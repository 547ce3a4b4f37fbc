"""Package-level guarantees: light import, layering, CLI entry point."""

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


# The layers, bottom to top. A module may import its own layer and anything below it.
BASE = {"exceptions", "_optional", "_version", "constants", "types", "_json"}
GENERIC = {"solvers", "observation_models", "prm"}


def test_generic_layers_import_only_base():
    for sub in GENERIC:
        for path in (PACKAGE_DIR / sub).rglob("*.py"):
            imported = _internal_imports(path) - BASE - {sub}
            assert not imported, (
                f"{path.relative_to(PACKAGE_DIR)} imports {sorted(imported)} (DESIGN §2 layering)"
            )


def test_nothing_below_cli_imports_cli_and_routers_do_no_io():
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR).parts
        if parts[0] in ("cli", "__main__.py"):
            continue
        assert "cli" not in _internal_imports(path), f"{'/'.join(parts)} imports the CLI layer"
    for path in (PACKAGE_DIR / "routers").rglob("*.py") if (PACKAGE_DIR / "routers").exists() else []:
        imported = _internal_imports(path)
        assert not imported & {"generation", "evaluation"}, (
            f"{path.name} imports {imported}: routers sit below them"
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
