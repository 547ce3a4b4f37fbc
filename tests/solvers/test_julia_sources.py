"""The Julia side of the SARSOP backend, checked without Julia: environment files, sources, setup-julia."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
import tree_sitter_julia
from click.testing import CliRunner
from tree_sitter import Language, Parser

import trim_pomdp
from trim_pomdp.solvers.sarsop import julia_bridge as _julia
from trim_pomdp.solvers.sarsop import setup as _setup
from trim_pomdp.solvers.sarsop.julia_bridge import BACKENDS, julia_source_dir

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(trim_pomdp.__file__).resolve().parent
PROJECT_TOML = REPO / "julia" / "Project.toml"
JULIAPKG_JSON = PACKAGE / "juliapkg.json"

#: UUIDs from the packages' own Project.toml files
EXPECTED_UUIDS = {
    "POMDPs": "a93abf59-7444-517b-a68a-c42f96afdd7d",
    "POMDPTools": "7588e00f-9cae-40de-98dc-e0c70c48cdd7",
    "SARSOP": "cef570c6-3a94-5604-96b7-1a5e143043f2",
    "NativeSARSOP": "a07c76ea-660d-4c9a-8028-2e6dbd212cb8",
    "SparseArrays": "2f01184e-e22b-5df5-ae63-d93ebab69eaf",
}
#: versions the compat ranges must admit: the newest releases, and what the older General-registry copy offers
MUST_ADMIT = {
    "POMDPs": ["0.9.4", "1.0.0"],
    "POMDPTools": ["1.0.0", "1.1.0"],
    "SARSOP": ["0.5.7", "0.6.0"],
    "NativeSARSOP": ["0.1.3"],
}
MUST_REJECT = {"SARSOP": ["0.5.4"]}  # pre-POMDPTools API (no policy_filename, returns a POMDPPolicy)


# ----------------------------------------------------------------------------------------------------
# Project.toml <-> juliapkg.json
# ----------------------------------------------------------------------------------------------------
def _project():
    return tomllib.loads(PROJECT_TOML.read_text())


def _juliapkg():
    return json.loads(JULIAPKG_JSON.read_text())


def test_project_and_juliapkg_declare_the_same_packages():
    project, jpkg = _project(), _juliapkg()
    packages = jpkg["packages"]
    assert set(project["deps"]) == set(packages) == set(EXPECTED_UUIDS)
    for name, uuid in project["deps"].items():
        assert packages[name]["uuid"] == uuid == EXPECTED_UUIDS[name], name
        assert packages[name].get("version") == project["compat"].get(name), f"compat of {name} differs"
    assert jpkg["julia"] == project["compat"]["julia"]


def _admits(spec: str, version: str) -> bool:
    """Julia caret compat: "0.5.7, 0.6" admits [0.5.7, 0.6.0) and [0.6.0, 0.7.0)."""
    v = tuple(int(x) for x in version.split("."))
    for part in spec.split(","):
        lo = tuple(int(x) for x in part.strip().split("."))
        lo_full = lo + (0,) * (3 - len(lo))
        nonzero = next((i for i, x in enumerate(lo) if x != 0), len(lo) - 1)
        hi = list(lo[: nonzero + 1]) + [0] * (3 - nonzero - 1)
        hi[nonzero] += 1
        if lo_full <= v < tuple(hi):
            return True
    return False


def test_compat_ranges_admit_the_versions_the_code_was_written_for():
    compat = _project()["compat"]
    for name, versions in MUST_ADMIT.items():
        for version in versions:
            assert _admits(compat[name], version), f"{name} compat {compat[name]!r} rejects {version}"
    for name, versions in MUST_REJECT.items():
        for version in versions:
            assert not _admits(compat[name], version), f"{name} compat {compat[name]!r} admits {version}"
    assert _admits(compat["julia"], "1.10.4") and not _admits(
        compat["julia"], "1.9.4"
    )  # juliacall needs 1.10


def test_compat_strings_parse_with_juliapkg():
    compat_mod = pytest.importorskip("juliapkg.compat", reason="juliapkg not installed (extra 'julia')")
    for name, spec in _project()["compat"].items():
        assert str(compat_mod.Compat.parse(spec)), name


def test_juliapkg_json_ships_inside_the_package():
    # juliapkg finds a package's juliapkg.json next to its __init__.py
    assert JULIAPKG_JSON.parent == PACKAGE and (PACKAGE / "__init__.py").exists()
    for filename, _ in BACKENDS.values():
        assert (julia_source_dir() / filename).is_file()
    assert (julia_source_dir() / "common.jl").is_file()


# ----------------------------------------------------------------------------------------------------
# the Julia sources parse, and agree with the Python side
# ----------------------------------------------------------------------------------------------------
PARSER = Parser(Language(tree_sitter_julia.language()))


def _problems(source: bytes) -> list[str]:
    out = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            out.append(f"{node.type} at {node.start_point}: {source[node.start_byte : node.end_byte][:60]!r}")
        for child in node.children:
            walk(child)

    walk(PARSER.parse(source).root_node)
    return out


JL_FILES = sorted(julia_source_dir().glob("*.jl"))


@pytest.mark.parametrize("path", JL_FILES, ids=lambda p: p.name)
def test_julia_source_parses_without_errors(path):
    assert _problems(path.read_bytes()) == []


def test_the_parse_check_can_fail():
    assert _problems(b"function f(x\n    x +\nend\n")
    assert _problems(b"module M\nfunction g() = 1\n")


def _strip_comments(text: str) -> str:
    text = re.sub(r'"""[\s\S]*?"""', "", text)
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_julia_sources_use_only_declared_packages_and_never_both_sarsops():
    declared = set(_project()["deps"])
    for path in JL_FILES:
        code = _strip_comments(path.read_text())
        used = set()
        for match in re.finditer(
            r"^\s*(?:using|import)\s+([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)", code, re.M
        ):
            used.update(name.strip().split(".")[0] for name in match.group(1).split(","))
        assert used <= declared | {"Base"}, f"{path.name} loads undeclared packages {sorted(used - declared)}"
        assert not re.search(r"^\s*using\s+.*\b(SARSOP|NativeSARSOP)\b", code, re.M), (
            f"{path.name}: `using` SARSOP/NativeSARSOP would clash on SARSOPSolver; use `import`"
        )


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend_files_define_the_module_and_functions_python_calls(backend):
    filename, module = BACKENDS[backend]
    code = _strip_comments((julia_source_dir() / filename).read_text())
    assert re.search(rf"^module {module}\s*$", code, re.M)
    assert 'include("common.jl")' in code
    assert re.search(
        r"^function solve_pomdp\(m, workdir::AbstractString, timeout::Real, precision::Real; "
        r"kwargs\.\.\.\)",
        code,
        re.M,
    )
    # the tuple it returns has the 7 fields _julia.solve_with_julia unpacks
    returns = re.findall(r"return \(alphas, actions, ([^)]*(?:\([^)]*\)[^)]*)*)\)", code)
    assert returns and all(len(_split_top(r)) == 5 for r in returns), returns


def _split_top(text: str) -> list[str]:
    depth, parts, cur = 0, [], ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [*parts, cur]


def test_build_pomdp_signature_matches_the_python_call():
    code = _strip_comments((julia_source_dir() / "common.jl").read_text())
    match = re.search(r"function build_pomdp\(([^)]*)\)", code)
    assert match
    params = [p.strip() for p in match.group(1).replace("\n", " ").split(",")]
    names = [p.split("::")[0] for p in params]
    assert names == [
        "n_states",
        "n_actions",
        "n_obs",
        "t_a",
        "t_s",
        "t_sp",
        "t_p",
        "o_a",
        "o_sp",
        "o_o",
        "o_p",
        "R",
        "b0",
        "terminals",
        "discount",
    ]
    # the Python side passes exactly these, in this order
    import inspect

    src = inspect.getsource(_julia.solve_with_julia)
    call = re.search(r"module\.build_pomdp\(([\s\S]*?)\)\n", src).group(1)
    passed = [a.strip() for a in call.replace("\n", " ").split(",") if a.strip()]
    assert passed == [
        "p.n_states",
        "p.n_actions",
        "p.n_observations",
        "p.T_a",
        "p.T_s",
        "p.T_sp",
        "p.T_p",
        "p.O_a",
        "p.O_sp",
        "p.O_o",
        "p.O_p",
        "p.R",
        "p.b0",
        "p.terminals",
        "float(p.discount)",
    ]


# ----------------------------------------------------------------------------------------------------
# trim-pomdp setup-julia
# ----------------------------------------------------------------------------------------------------
def _isolated_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which no Julia can be found and juliapkg uses a fresh project under tmp_path."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON_JULIAPKG_", "PYTHON_JULIACALL_", "JULIA_"))
        and k.lower() != "https_proxy"
    }
    env["PATH"] = str(Path(sys.executable).parent)  # no julia / juliaup on PATH
    env["PYTHON_JULIAPKG_PROJECT"] = str(tmp_path / "julia_env")
    env["JULIA_DEPOT_PATH"] = str(tmp_path / "depot")
    env["HOME"] = str(tmp_path)
    return env


def test_setup_julia_fails_fast_with_an_actionable_message(tmp_path):
    """The real command, in a fresh process, where it cannot work: a message within seconds, no hang."""
    env = _isolated_env(tmp_path)
    env["HTTPS_PROXY"] = (
        "http://127.0.0.1:9"  # unreachable, so that it also fails fast on machines that are online
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "trim_pomdp", "setup-julia"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 10, f"setup-julia took {elapsed:.1f} s to fail"
    assert "Traceback" not in proc.stderr + proc.stdout
    message = proc.stderr
    assert "Julia cannot be set up here" in message
    assert ("pip install 'trim-pomdp[julia]'" in message) or ("PYTHON_JULIAPKG_EXE" in message)


def test_setup_julia_fails_fast_when_offline_with_the_julia_extra_installed(tmp_path):
    """Same, past the package check: a stub juliacall spec lets the command reach its network probe."""
    pytest.importorskip("juliapkg")
    env = _isolated_env(tmp_path)
    env["HTTPS_PROXY"] = "http://127.0.0.1:9"
    stub = tmp_path / "stubs" / "juliacall"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(
        "raise ImportError('test stub: importing juliacall would start Julia')\n"
    )
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "stubs"), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "trim_pomdp", "setup-julia", "--probe-timeout", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 1 and elapsed < 10, (proc.returncode, elapsed, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "cannot reach 127.0.0.1:9 (the HTTPS proxy)" in proc.stderr
    assert (
        "PYTHON_JULIAPKG_EXE=/path/to/julia" in proc.stderr and "PYTHON_JULIAPKG_OFFLINE=yes" in proc.stderr
    )


def _pretend_installed(monkeypatch):
    monkeypatch.setattr(_setup, "_module_installed", lambda name: True)
    monkeypatch.setattr(_setup, "julia_status", lambda: (False, "not set up"))


def test_setup_plan_offline_names_what_is_missing(monkeypatch, tmp_path):
    pytest.importorskip("juliapkg")
    _pretend_installed(monkeypatch)
    for key, value in _isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    for key in list(os.environ):
        if key.startswith(("PYTHON_JULIAPKG_EXE", "PYTHON_JULIACALL_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PYTHON_JULIAPKG_OFFLINE", "yes")
    plan = _setup.plan_setup(probe_timeout=0.5)
    assert plan.action == "blocked" and plan.hosts == []
    assert "PYTHON_JULIAPKG_OFFLINE is on and no Julia was found" in plan.problems[0]
    assert "PYTHON_JULIAPKG_EXE=/path/to/julia" in plan.problems[0]


def test_setup_plan_probes_the_network_with_a_timeout(monkeypatch, tmp_path):
    pytest.importorskip("juliapkg")
    _pretend_installed(monkeypatch)
    monkeypatch.delenv("PYTHON_JULIAPKG_OFFLINE", raising=False)
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("JULIA_PKG_SERVER", "http://127.0.0.1:9")
    probed = []

    def fake_probe(host, port, timeout):
        probed.append((host, port, timeout))
        return None if host == "127.0.0.1" else "gaierror: [Errno -2] Name or service not known"

    monkeypatch.setattr(_setup, "probe", fake_probe)
    plan = _setup.plan_setup(probe_timeout=1.5)
    assert probed == [(_setup.JULIA_DOWNLOAD_HOST, 443, 1.5), ("127.0.0.1", 9, 1.5)]
    assert plan.action == "blocked" and len(plan.problems) == 1
    assert "cannot reach julialang-s3.julialang.org:443" in plan.problems[0]
    assert "PYTHON_JULIAPKG_OFFLINE=yes" in plan.problems[0]


def test_probe_gives_up_within_its_timeout():
    start = time.monotonic()
    error = _setup.probe("127.0.0.1", 9, timeout=1.0)  # discard port: refused or filtered
    assert error is not None and time.monotonic() - start < 3


def test_setup_julia_cli_reports_blocked_plans_without_traceback(monkeypatch):
    from trim_pomdp.cli import main

    monkeypatch.setattr(
        _setup,
        "plan_setup",
        lambda probe_timeout=3.0, force=False: _setup.SetupPlan(
            "blocked",
            problems=["cannot reach example:443 (timed out); set PYTHON_JULIAPKG_EXE=/path/to/julia"],
        ),
    )
    result = CliRunner().invoke(main, ["setup-julia", "--probe-timeout", "0.5"])
    assert result.exit_code == 1
    assert "Julia cannot be set up here" in result.output and "PYTHON_JULIAPKG_EXE" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_setup_julia_dry_run_when_already_set_up(monkeypatch):
    from trim_pomdp.cli import main

    monkeypatch.setattr(
        _setup,
        "plan_setup",
        lambda probe_timeout=3.0, force=False: _setup.SetupPlan("done", julia="/x/julia"),
    )
    result = CliRunner().invoke(main, ["setup-julia", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "already set up" in result.output


def test_tiger_used_by_the_check_is_a_valid_model():
    from trim_pomdp.solvers.sarsop.setup import tiger_pomdp

    m = tiger_pomdp().check()
    assert m.T.shape == (3, 2, 2) and m.discount == 0.95


def test_setup_plan_force_probes_even_when_set_up(monkeypatch):
    pytest.importorskip("juliapkg")
    monkeypatch.setattr(_setup, "_module_installed", lambda name: True)
    monkeypatch.setattr(_setup, "julia_status", lambda: (True, "set up"))
    for key in (
        "PYTHON_JULIAPKG_OFFLINE",
        "PYTHON_JULIAPKG_EXE",
        "PYTHON_JULIACALL_EXE",
        "PYTHON_JULIACALL_PROJECT",
        "HTTPS_PROXY",
        "https_proxy",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(_setup, "probe", lambda host, port, timeout: "timed out")
    assert _setup.plan_setup(force=False).action == "done"
    forced = _setup.plan_setup(force=True)
    assert forced.action == "blocked" and "cannot reach" in forced.problems[0]
