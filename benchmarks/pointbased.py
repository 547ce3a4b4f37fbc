"""Quality and speed of the point-based solver on the classic POMDP files and on the flattened TRIM-POMDP.

Usage::

    python benchmarks/pointbased.py --data-dir DIR [--out FILE] [--hallway-time 60] [--trim-time 60]
                                    [--repeats 5] [--cases tiger,1d] [--fresh]
                                    [--appl-examples DIR] [--pomdpsol PATH] [--large-time 60]
                                    [--zmdp-models DIR] [--mid-time 60]

``DIR`` is a folder with the classic files ``Tiger.pomdp``, ``Hallway.pomdp``, ``cheese.95.POMDP`` and
``1d.POMDP`` (from pomdp.org); without it only ``trim_default`` runs. ``--zmdp-models`` is a folder with
``mini-hall2.pomdp`` and ``tiger-grid.pomdp`` from ZMDP (github:trey0/zmdp, folder ``pomdpModels`` of commit
a5b6c40) and ``RockSample_4_4.pomdp`` made by its ``src/pomdpModels/gen_RockSample_4_4`` (a Perl script).

Cases (the targets are set against APPL ``pomdpsol``'s results on the same files):

* ``tiger``: Tiger (γ = 0.95), bounds within 1e-3 of 19.3711 in ≤ 1 s (solved to precision 5e-4); median
  over ``--repeats`` solves, with the greedy-branch HSVI2 variant of the same solver as the in-run baseline.
* ``tiger_start_0.9``: start belief (0.9, 0.1); pomdpsol gives V* ∈ [22.5735, 22.5744].
* ``tiger_finite``: exact finite-horizon values and pruned vector counts (as exact value iteration gives them).
* ``hallway``: lower ≥ 0.99 and upper ≤ 1.21 within ``--hallway-time`` s (pomdpsol after 180 s:
  [0.9954, 1.2052]), default stochastic branch sampling vs the greedy HSVI2 baseline.
* ``cheese``, ``1d``: solved to precision 1e-3.
* ``trim_default``: the flattened default TRIM-POMDP (shipped parameters and observation model): the
  point-based bounds must bracket the native finite-horizon solver's V(b0) (× γ for the flattened start
  step); gap vs 1e-3·R, with the bound trajectory.

Side by side with APPL ``pomdpsol`` in the same run (``--pomdpsol`` or ``TRIM_POMDP_POMDPSOL`` or ``PATH``;
``--appl-examples``: a folder with APPL's example files, e.g. ``RockSample_7_8.pomdpx``; see
docs/guide/sarsop.md for how to build APPL and extract them):

* ``appl_small``: time to gap 1e-3 on Tiger, cheese.95 (and 4x3.95 when ``DIR`` has it) and on ZMDP's
  mini-hall2 and RockSample_4_4 (``--zmdp-models``), median over ``--repeats``: ours (wall and CPU seconds of
  the solve call) and pomdpsol's (the CPU seconds its log reports, loading excluded); targets ≤ 0.15 s for
  Tiger, cheese.95 and mini-hall2, ≤ 3× pomdpsol's for 4x3.95 and RockSample_4_4.
* ``appl_midsize``: ours for ``--mid-time`` wall seconds against pomdpsol at the same CPU seconds on Hallway,
  Hallway2, TagAvoid, tiger-grid and the flattened default TRIM-POMDP (written to a file for both); the gap
  ratio must not exceed the one measured before the sparse work (Hallway 0.93, Hallway2 0.85, TagAvoid 0.88,
  tiger-grid 0.86, TRIM 0.15).
* ``appl_parse``: reading each file: our wall and CPU seconds and the peak memory of a fresh process that only
  imports and reads (and that of one that only imports, for the baseline), against pomdpsol's loading time (CPU
  seconds, as its log reports them, resolution 0.01 s) and the peak memory of a run stopped after 0.01 s
  (loading and initial bounds); targets: CPU time ≤ 2×, memory ≤ 3×.
* ``appl_random``: a random sparse 7-state model (2 successors per row, discount 0.8; the generator of
  ``tests/solvers/test_sparse_models.py``, seed 4) whose beliefs fill the simplex, to gap 1e-3: CPU seconds and
  backups of both solvers (target: within 3× of pomdpsol, the issue's bar for 4x3.95 and RockSample_4_4).
* ``rocksample_7_8``: ours for ``--large-time`` wall seconds against pomdpsol at the same CPU seconds (its log
  is CPU time; on a busy machine wall time is longer) and at ``--large-time`` CPU seconds; load targets ≤ 10 s
  and ≤ 1 GB (the peak of a process that only reads; the solve's own peak is reported beside pomdpsol's), gap
  target ≤ pomdpsol's.
* ``rocksample_11_11``: ours under a 4 GiB memory limit for ``--large-time`` seconds: it loads, and the bounds
  at the end are tighter than the initial ones.

Results are written after every case (``--out``, default ``benchmark-results/pointbased.json``) and a rerun
skips the cases already there unless ``--fresh``. Timings on a shared machine are pessimistic; the machine and
its load are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import default_out, machine, write_result

from trim_pomdp.exceptions import BackendUnavailableError
from trim_pomdp.solvers.formats import read_pomdp
from trim_pomdp.solvers.pointbased.solver import PointBasedSolver
from trim_pomdp.solvers.sarsop.appl import find_pomdpsol

TIGER_FINITE = {
    1: (-1.0, 3),
    2: (-1.95, 5),
    3: (2.3098, 9),
    4: (1.795544, 7),
    5: (2.763096, 13),
    6: (4.428531, 15),
    7: (4.584266, 19),
    8: (5.324021, 25),
    10: (6.693368, 27),
    20: (11.879569, 59),
    40: (16.679939, 81),
}


def _solve(model, trajectory: list | None = None, **kw):
    if trajectory is not None:
        kw["callback"] = lambda d: trajectory.append([d["seconds"], d["lower_bound"], d["upper_bound"]])
        kw["callback_interval"] = 2.0
    solver = PointBasedSolver(**kw)
    t0 = time.perf_counter()
    policy = solver.solve(model)
    info = policy.info
    return {
        "lower_bound": info.lower_bound,
        "upper_bound": info.upper_bound,
        "gap": info.gap,
        "seconds": time.perf_counter() - t0,
        "converged": info.converged,
        "trials": info.iterations,
        "alphas": info.sizes.get("alpha_vectors"),
        "stop_reason": info.extra.get("stop_reason"),
    }


def case_tiger(data: Path, repeats: int) -> dict:
    m = read_pomdp(data / "Tiger.pomdp")
    runs = {
        name: [_solve(m, precision=5e-4, time_limit=30, sampling=name, seed=r) for r in range(repeats)]
        for name in ("stochastic", "greedy")
    }
    out = {}
    for name, rs in runs.items():
        out[name] = {
            "median_seconds": statistics.median(r["seconds"] for r in rs),
            "runs": rs,
            "all_within_1e-3_of_19.3711": all(
                abs(r["lower_bound"] - 19.3711) <= 1e-3 and abs(r["upper_bound"] - 19.3711) <= 1e-3
                for r in rs
            ),
        }
    out["speed_ratio_greedy_over_stochastic"] = (
        out["greedy"]["median_seconds"] / out["stochastic"]["median_seconds"]
    )
    out["target_met"] = (
        out["stochastic"]["all_within_1e-3_of_19.3711"] and out["stochastic"]["median_seconds"] <= 1.0
    )
    return out


def case_tiger_start(data: Path) -> dict:
    m = read_pomdp(data / "Tiger.pomdp")
    m.b0 = np.array([0.9, 0.1])
    r = _solve(m, precision=1e-3, time_limit=30)
    r["target_met"] = (
        r["lower_bound"] <= 22.5744 + 1e-9 and r["upper_bound"] >= 22.5735 - 1e-9 and r["gap"] <= 1e-3
    )
    return r


def case_tiger_finite(data: Path) -> dict:
    m = read_pomdp(data / "Tiger.pomdp")
    rows = {}
    for h, (value, n_ref) in TIGER_FINITE.items():
        solver = PointBasedSolver(finite_horizon=h, time_limit=300)
        t0 = time.perf_counter()
        policy = solver.solve(m)
        rows[h] = {
            "value": policy.info.lower_bound,
            "reference": value,
            "alphas": len(policy.alphas),
            "reference_alphas": n_ref,
            "seconds": time.perf_counter() - t0,
            "value_matches": abs(policy.info.lower_bound - value) <= 5e-7,
        }
    return {"horizons": rows, "target_met": all(r["value_matches"] for r in rows.values())}


def case_hallway(data: Path, seconds: float) -> dict:
    m = read_pomdp(data / "Hallway.pomdp")
    out = {name: _solve(m, time_limit=seconds, sampling=name) for name in ("stochastic", "greedy")}
    s = out["stochastic"]
    out["target_met"] = s["lower_bound"] >= 0.99 and s["upper_bound"] <= 1.21
    out["pomdpsol_180s"] = [0.995377, 1.20519]
    return out


def case_file(data: Path, name: str) -> dict:
    r = _solve(read_pomdp(data / name), precision=1e-3, time_limit=60)
    r["target_met"] = r["converged"]
    return r


def case_trim(seconds: float) -> dict:
    from trim_pomdp.pomdp import build_trim_pomdp, default_observation_model, load_default_params
    from trim_pomdp.solvers.finite_horizon import FiniteHorizonSolver

    tp = build_trim_pomdp(load_default_params(), default_observation_model())
    gamma, reward = tp.params.discount, tp.params.reward
    native = FiniteHorizonSolver(precision=1e-6)
    native_policy = native.solve(tp.structured(discount=gamma))
    lo, hi = gamma * native_policy.info.lower_bound, gamma * native_policy.info.upper_bound
    t0 = time.perf_counter()
    flat = tp.flatten()
    flatten_seconds = time.perf_counter() - t0
    traj: list = []
    r = _solve(flat, trajectory=traj, precision=1e-3 * reward, time_limit=seconds)
    hit = [t for t, lo_, up_ in traj if up_ - lo_ <= 1e-3 * reward]
    r["trajectory"] = traj
    r["seconds_to_gap_target"] = hit[0] if hit else None
    r.update(
        {
            "native_lower": lo,
            "native_upper": hi,
            "native_seconds": native_policy.info.seconds,
            "flatten_seconds": flatten_seconds,
            "states": flat.n_states,
            "observations": flat.n_observations,
            "brackets_native": r["lower_bound"] <= hi + 1e-9 and r["upper_bound"] >= lo - 1e-9,
            "gap_target": 1e-3 * reward,
        }
    )
    r["target_met"] = r["brackets_native"] and r["gap"] <= 1e-3 * reward
    return r


# -- side by side with APPL pomdpsol -------------------------------------------------------------------------
_ROW = re.compile(r"^\s*([0-9.]+)\s+(\d+)\s+(\d+)\s+(-?[0-9.e+-]+)\s+(-?[0-9.e+-]+)\s+([0-9.e+-]+)\s", re.M)


#: GNU time reports the peak memory of the command alone; ``wait4`` from this process would count the copy of
#: the interpreter that ``fork`` makes before ``exec`` (Linux keeps the high-water mark across ``exec``)
GNU_TIME = Path("/usr/bin/time")


def _measured(cmd: list[str], cwd: str | None = None) -> tuple[str, float, float, float]:
    """Run ``cmd``; (its output, wall seconds, CPU seconds, peak resident MiB), NaN without GNU time."""
    t0 = time.perf_counter()
    prefix = [str(GNU_TIME), "-f", "GNU_TIME_PEAK_KB %M CPU %U %S"] if GNU_TIME.is_file() else []
    proc = subprocess.run([*prefix, *cmd], capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-2000:]}")
    m = re.search(r"GNU_TIME_PEAK_KB (\d+) CPU ([0-9.]+) ([0-9.]+)", proc.stderr)
    if m is None:
        return proc.stdout + proc.stderr, wall, float("nan"), float("nan")
    return proc.stdout, wall, float(m[2]) + float(m[3]), int(m[1]) / 1024


def _pomdpsol(binary: Path, path: Path, timeout: float, precision: float = 1e-3) -> dict:
    """One pomdpsol run: its log's rows (CPU seconds, lower, upper), loading time, wall, CPU, peak MiB."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(binary), str(path), "--timeout", repr(timeout), "--precision", repr(precision)]
        out, wall, cpu, mib = _measured([*cmd, "--output", str(Path(tmp) / "out.policy")], cwd=tmp)
    rows = [(float(m[1]), float(m[4]), float(m[5])) for m in _ROW.finditer(out)]
    load = re.search(r"loading time\s*:\s*([0-9.]+)", out)
    return {
        "rows": rows,
        "backups": [int(m[3]) for m in _ROW.finditer(out)],
        "loading_seconds": float(load.group(1)) if load else None,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "peak_mib": mib,
        "final": rows[-1] if rows else None,
    }


def _appl_at(rows: list, cpu: float) -> list:
    """pomdpsol's bounds at ``cpu`` seconds: the last log row at or before it."""
    before = [r for r in rows if r[0] <= cpu]
    return list(before[-1] if before else rows[0])


#: The issue's bars for the time to gap 1e-3: an absolute one (seconds of our solve) or a multiple of pomdpsol's
SMALL_TARGETS = {
    "Tiger.pomdp": ("seconds", 0.15),
    "cheese.95.POMDP": ("seconds", 0.15),
    "mini-hall2.pomdp": ("seconds", 0.15),
    "RockSample_4_4.pomdp": ("ratio", 3.0),
    "4x3.95.POMDP": ("ratio", 3.0),
}


def case_appl_small(files: list[Path], binary: Path, repeats: int) -> dict:
    out: dict = {}
    for path in files:
        m = read_pomdp(path)
        ours = []
        for r in range(repeats):
            c0 = time.process_time()
            res = _solve(m, precision=1e-3, time_limit=30, seed=r)
            res["cpu_seconds"] = time.process_time() - c0
            ours.append(res)
        appl = [_pomdpsol(binary, path, timeout=30) for _ in range(repeats)]
        med_wall = statistics.median(r["seconds"] for r in ours)
        med_cpu = statistics.median(r["cpu_seconds"] for r in ours)
        med_appl = statistics.median(a["final"][0] for a in appl)
        kind, bar = SMALL_TARGETS.get(path.name, ("ratio", 3.0))
        limit = bar if kind == "seconds" else bar * max(med_appl, 0.01)
        converged = all(r["converged"] for r in ours)
        out[path.name] = {
            "ours_median_wall_seconds": med_wall,
            "ours_median_cpu_seconds": med_cpu,
            "pomdpsol_median_cpu_seconds": med_appl,
            "pomdpsol_median_wall_seconds": statistics.median(a["wall_seconds"] for a in appl),
            "ratio_ours_cpu_over_pomdpsol": med_cpu / max(med_appl, 0.01),
            "pomdpsol_time_resolution": 0.01,
            "all_converged": converged,
            "ours": ours,
            "pomdpsol_final": [a["final"] for a in appl],
            "target": f"<= {bar} s" if kind == "seconds" else f"<= {bar}x pomdpsol",
            "target_met": converged and med_cpu <= limit,
            "target_met_wall": converged and med_wall <= limit,
        }
    out["target_met"] = all(v["target_met"] for v in out.values())
    return out


#: The 60-s gap as a fraction of pomdpsol's that the issue measured before this work (not to get worse)
MIDSIZE_BEFORE = {
    "Hallway.pomdp": 0.93,
    "Hallway2.pomdp": 0.85,
    "TagAvoid.pomdp": 0.88,
    "tiger-grid.pomdp": 0.86,
    "trim_default.pomdp": 0.15,
}


def case_appl_midsize(files: list[Path], binary: Path, seconds: float) -> dict:
    """Ours for ``seconds`` (wall) against pomdpsol at the same CPU seconds, on the mid-size files.

    The flattened default TRIM-POMDP is written to a file first, so that both solvers read the same model.
    """
    from trim_pomdp.pomdp import build_trim_pomdp, default_observation_model, load_default_params
    from trim_pomdp.solvers.formats import write_pomdp

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        flat = build_trim_pomdp(load_default_params(), default_observation_model()).flatten()
        trim_file = write_pomdp(flat, Path(tmp) / "trim_default.pomdp")
        for path in [*files, trim_file]:
            ours = _ours_large(path, seconds, "4G")
            appl = _pomdpsol(binary, path, timeout=seconds)
            same_cpu = _appl_at(appl["rows"], ours["cpu_seconds"] - ours["read_seconds"])
            ratio = ours["gap"] / max(same_cpu[2] - same_cpu[1], 1e-12)
            before = MIDSIZE_BEFORE.get(path.name)
            out[path.name] = {
                "ours": ours,
                "pomdpsol_at_our_cpu_seconds": same_cpu,
                "pomdpsol_final": appl["final"],
                "gap_ratio_same_cpu": ratio,
                "gap_ratio_before": before,
                "brackets_agree": ours["lower_bound"] <= same_cpu[2] + 1e-6
                and same_cpu[1] <= ours["upper_bound"] + 1e-6,
                "target_met": before is None or ratio <= before,
            }
    out["target_met"] = all(v["target_met"] for v in out.values())
    return out


def random_sparse_model(seed: int, S: int = 7, A: int = 3, Z: int = 3, discount: float = 0.8, k: int = 2):
    """The random model of ``tests/solvers/test_sparse_models.py`` (same generator, same draws)."""
    import scipy.sparse as sp

    from trim_pomdp.solvers import TabularPOMDP

    rng = np.random.default_rng(seed)
    T, O = [], []
    for _ in range(A):
        t, o = np.zeros((S, S)), np.zeros((S, Z))
        for s in range(S):
            t[s, rng.choice(S, size=k, replace=False)] = rng.dirichlet(np.ones(k))
            o[s, rng.choice(Z, size=min(k, Z), replace=False)] = rng.dirichlet(np.ones(min(k, Z)))
        T.append(sp.csr_matrix(t))
        O.append(sp.csr_matrix(o))
    R = rng.normal(size=(S, A))
    b0 = np.zeros(S)
    b0[: S // 2] = rng.dirichlet(np.ones(S // 2))
    return TabularPOMDP(T=T, O=O, R=R, b0=b0, discount=discount)


def case_appl_random(binary: Path) -> dict:
    from trim_pomdp.solvers.formats import write_pomdp

    m = random_sparse_model(4)
    c0 = time.process_time()
    info = PointBasedSolver(precision=1e-3, time_limit=120).solve(m).info
    cpu = time.process_time() - c0
    with tempfile.TemporaryDirectory() as tmp:
        path = write_pomdp(m, Path(tmp) / "random4.pomdp")
        appl = _pomdpsol(binary, path, timeout=120)
    backups = appl["backups"]
    return {
        "ours_cpu_seconds": cpu,
        "ours_wall_seconds": info.seconds,
        "ours_backups": info.sizes["backups"],
        "ours_gap": info.gap,
        "ours_converged": info.converged,
        "pomdpsol_cpu_seconds": appl["final"][0],
        "pomdpsol_gap": appl["final"][2] - appl["final"][1],
        "pomdpsol_backups": backups[-1] if backups else None,
        "ratio_cpu": cpu / max(appl["final"][0], 0.01),
        "target_met": info.converged and cpu <= 3 * max(appl["final"][0], 0.01),
    }


_READ = (
    "import json, sys, time\n"
    "from trim_pomdp.solvers.formats import read_pomdp\n"
    "t, c = time.perf_counter(), time.process_time()\n"
    "m = read_pomdp(sys.argv[1]) if sys.argv[1] != '-' else None\n"
    "print(json.dumps({'seconds': time.perf_counter() - t, 'cpu_seconds': time.process_time() - c,"
    " 'states': m.n_states if m else None, 'nnz': m.nnz if m else None,"
    " 'sparse': m.is_sparse if m else None}))\n"
)


def case_appl_parse(files: list[Path], binary: Path, repeats: int) -> dict:
    out: dict = {}
    for path in files:
        ours, peaks = [], []
        for _ in range(repeats):
            text, _, _, mib = _measured([sys.executable, "-c", _READ, str(path)])
            ours.append(json.loads(text.strip().splitlines()[-1]))
            peaks.append(mib)
        _, _, _, import_mib = _measured([sys.executable, "-c", _READ, "-"])
        appl = [_pomdpsol(binary, path, timeout=0.01) for _ in range(repeats)]
        sec = statistics.median(o["seconds"] for o in ours)
        cpu = statistics.median(o["cpu_seconds"] for o in ours)
        a_sec = statistics.median(a["loading_seconds"] for a in appl)
        mem, a_mem = statistics.median(peaks), statistics.median(a["peak_mib"] for a in appl)
        out[path.name] = {
            "states": ours[0]["states"],
            "nnz": ours[0]["nnz"],
            "sparse": ours[0]["sparse"],
            "ours_median_seconds": sec,
            "ours_median_cpu_seconds": cpu,
            "ours_median_peak_mib": mem,
            "ours_import_only_peak_mib": import_mib,
            "ours_model_mib": mem - import_mib,
            "pomdpsol_median_loading_seconds": a_sec,
            "pomdpsol_median_peak_mib": a_mem,
            "time_ratio": sec / max(a_sec, 0.01),
            "cpu_time_ratio": cpu / max(a_sec, 0.01),
            "memory_ratio": mem / a_mem,
            "memory_ratio_without_interpreter": (mem - import_mib) / a_mem,
            "target_met": cpu <= 2 * max(a_sec, 0.01) and mem <= 3 * a_mem,
        }
    out["target_met"] = all(v["target_met"] for v in out.values())
    return out


_SOLVE = (
    "import json, sys, time\n"
    "from trim_pomdp.solvers.formats import read_pomdp\n"
    "from trim_pomdp.solvers.pointbased.solver import PointBasedSolver\n"
    "t0 = time.perf_counter(); c0 = time.process_time()\n"
    "m = read_pomdp(sys.argv[1], memory_limit=sys.argv[3])\n"
    "read_s = time.perf_counter() - t0\n"
    "tr = []\n"
    "cb = lambda d: tr.append([d['seconds'], d['lower_bound'], d['upper_bound']])\n"
    "s = PointBasedSolver(time_limit=float(sys.argv[2]), memory_limit=sys.argv[3], callback=cb,"
    " callback_interval=1.0)\n"
    "p = s.solve(m)\n"
    "i = p.info\n"
    "print(json.dumps({'read_seconds': read_s, 'states': m.n_states, 'lower_bound': i.lower_bound,"
    " 'upper_bound': i.upper_bound, 'gap': i.gap, 'solve_seconds': i.seconds,"
    " 'cpu_seconds': time.process_time() - c0, 'stop_reason': i.extra['stop_reason'],"
    " 'first': tr[0], 'trajectory': tr[:: max(1, len(tr) // 20)]}))\n"
)


def _ours_large(path: Path, seconds: float, memory: str) -> dict:
    text, wall, cpu, mib = _measured([sys.executable, "-c", _SOLVE, str(path), repr(seconds), memory])
    r = json.loads(text.strip().splitlines()[-1])
    r.update({"process_wall_seconds": wall, "process_cpu_seconds": cpu, "peak_mib": mib})
    return r


def case_rocksample_7_8(examples: Path, binary: Path, seconds: float) -> dict:
    path = examples / "RockSample_7_8.pomdpx"
    ours = _ours_large(path, seconds, "4G")
    _, _, _, read_mib = _measured([sys.executable, "-c", _READ, str(path)])  # loading alone
    appl = _pomdpsol(binary, path, timeout=seconds)
    same_cpu = _appl_at(appl["rows"], ours["cpu_seconds"] - ours["read_seconds"])
    at_limit = _appl_at(appl["rows"], seconds)
    return {
        "ours": ours,
        "pomdpsol_at_our_cpu_seconds": same_cpu,
        "pomdpsol_at_limit": at_limit,
        "pomdpsol_loading_seconds": appl["loading_seconds"],
        "pomdpsol_peak_mib": appl["peak_mib"],
        "pomdpsol_wall_seconds": appl["wall_seconds"],
        "gap_ratio_same_cpu": ours["gap"] / (same_cpu[2] - same_cpu[1]),
        "gap_ratio_same_limit": ours["gap"] / (at_limit[2] - at_limit[1]),
        "brackets_agree": ours["lower_bound"] <= at_limit[2] and at_limit[1] <= ours["upper_bound"],
        "read_peak_mib": read_mib,
        "load_target_met": ours["read_seconds"] <= 10 and read_mib <= 1024,
        "target_met": ours["read_seconds"] <= 10
        and read_mib <= 1024
        and ours["gap"] <= same_cpu[2] - same_cpu[1],
    }


def case_rocksample_11_11(examples: Path, seconds: float) -> dict:
    r = _ours_large(examples / "RockSample_11_11.pomdpx", seconds, "4G")
    first = r["first"]
    r["improved"] = r["lower_bound"] > first[1] and r["upper_bound"] < first[2]
    r["target_met"] = r["improved"] and r["peak_mib"] <= 4096
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=None, help="folder with the classic .pomdp files")
    ap.add_argument("--out", type=Path, default=default_out(__file__), help="result file (JSON)")
    ap.add_argument("--hallway-time", type=float, default=60.0, help="seconds for Hallway")
    ap.add_argument("--trim-time", type=float, default=60.0, help="seconds for the flattened TRIM-POMDP")
    ap.add_argument("--repeats", type=int, default=5, help="Tiger solves per sampling variant")
    ap.add_argument("--cases", default=None, help="comma-separated cases to run (default: all)")
    ap.add_argument("--fresh", action="store_true", help="ignore results already in --out")
    ap.add_argument("--appl-examples", type=Path, default=None, help="folder with APPL's example files")
    ap.add_argument(
        "--pomdpsol", type=Path, default=None, help="APPL's pomdpsol (default: as the solver finds it)"
    )
    ap.add_argument("--large-time", type=float, default=60.0, help="seconds for the RockSample cases")
    ap.add_argument(
        "--zmdp-models",
        type=Path,
        default=None,
        help="folder with mini-hall2.pomdp, tiger-grid.pomdp and RockSample_4_4.pomdp from ZMDP",
    )
    ap.add_argument("--mid-time", type=float, default=60.0, help="seconds for the appl_midsize case")
    args = ap.parse_args()
    try:
        binary: Path | None = find_pomdpsol(args.pomdpsol)
    except BackendUnavailableError as exc:
        binary = None
        print(f"no pomdpsol ({exc}): the appl_* and rocksample_7_8 cases are skipped")
    ex, zm, data = args.appl_examples, args.zmdp_models, args.data_dir

    def existing(folder: Path | None, *names: str) -> list[Path]:
        return [] if folder is None else [folder / n for n in names if (folder / n).is_file()]

    small_files = [
        *existing(data, "Tiger.pomdp", "cheese.95.POMDP", "4x3.95.POMDP"),
        *existing(zm, "mini-hall2.pomdp", "RockSample_4_4.pomdp"),
    ]
    mid_files = [
        *existing(data, "Hallway.pomdp"),
        *existing(ex, "Hallway2.pomdp", "TagAvoid.pomdp"),
        *existing(zm, "tiger-grid.pomdp"),
    ]
    parse_files = [
        *existing(data, "Tiger.pomdp", "cheese.95.POMDP", "4x3.95.POMDP", "Hallway.pomdp"),
        *existing(zm, "mini-hall2.pomdp", "tiger-grid.pomdp", "RockSample_4_4.pomdp"),
        *existing(ex, "Hallway2.pomdp", "TagAvoid.pomdp", "RockSample_7_8.pomdpx", "RockSample_11_11.pomdpx"),
    ]

    results = {} if args.fresh or not args.out.exists() else json.loads(args.out.read_text())
    results["machine"] = machine()
    cases = results.setdefault("cases", {})
    plan = {
        "tiger": lambda: case_tiger(data, args.repeats),
        "tiger_start_0.9": lambda: case_tiger_start(data),
        "tiger_finite": lambda: case_tiger_finite(data),
        "hallway": lambda: case_hallway(data, args.hallway_time),
        "cheese": lambda: case_file(data, "cheese.95.POMDP"),
        "1d": lambda: case_file(data, "1d.POMDP"),
        "trim_default": lambda: case_trim(args.trim_time),
        "appl_small": lambda: case_appl_small(small_files, binary, args.repeats),
        "appl_midsize": lambda: case_appl_midsize(mid_files, binary, args.mid_time),
        "appl_parse": lambda: case_appl_parse(parse_files, binary, min(args.repeats, 3)),
        "appl_random": lambda: case_appl_random(binary),
        "rocksample_7_8": lambda: case_rocksample_7_8(ex, binary, args.large_time),
        "rocksample_11_11": lambda: case_rocksample_11_11(ex, args.large_time),
    }
    needs = {
        "appl_small": ("pomdpsol", "data"),
        "appl_parse": ("pomdpsol",),
        "appl_midsize": ("pomdpsol",),
        "appl_random": ("pomdpsol",),
        "rocksample_7_8": ("pomdpsol", "examples"),
        "rocksample_11_11": ("examples",),
    }
    wanted = set(plan) if args.cases is None else {c.strip() for c in args.cases.split(",") if c.strip()}
    unknown = wanted - set(plan)
    if unknown:
        ap.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(plan)}")
    for name, fn in plan.items():
        if name not in wanted:
            continue
        if name in cases:
            print(f"{name}: already in {args.out}, skipped (use --fresh to rerun)")
            continue
        need = needs.get(name, ("data",) if name != "trim_default" else ())
        missing = [
            what
            for what, ok in (
                ("pomdpsol", binary is not None),
                ("data", data is not None and data.is_dir()),
                ("examples", ex is not None and ex.is_dir()),
            )
            if what in need and not ok
        ]
        if missing:
            print(f"{name}: skipped, missing {' and '.join(missing)} (see --help)")
            continue
        print(f"running {name} ...", flush=True)
        cases[name] = fn()
        cases[name]["load_average_after"] = list(os.getloadavg())
        write_result(args.out, results)

    print(f"\n{'case':<18}{'lower':>12}{'upper':>12}{'gap':>10}{'seconds':>10}  target")
    for name, c in cases.items():
        if name == "tiger":
            s = c["stochastic"]["runs"][0]
            print(
                f"{name:<18}{s['lower_bound']:>12.6f}{s['upper_bound']:>12.6f}{s['gap']:>10.2e}"
                f"{c['stochastic']['median_seconds']:>10.3f}  {c['target_met']}  "
                f"(greedy HSVI2 baseline {c['greedy']['median_seconds']:.3f} s, "
                f"ratio {c['speed_ratio_greedy_over_stochastic']:.2f})"
            )
        elif name == "hallway":
            s, g = c["stochastic"], c["greedy"]
            print(
                f"{name:<18}{s['lower_bound']:>12.6f}{s['upper_bound']:>12.6f}{s['gap']:>10.2e}"
                f"{s['seconds']:>10.1f}  {c['target_met']}  (greedy baseline [{g['lower_bound']:.4f}, "
                f"{g['upper_bound']:.4f}])"
            )
        elif name == "appl_random":
            print(
                f"  {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in c.items() if isinstance(v, (int, float)))
            )
        elif name == "appl_midsize":
            for f, r in c.items():
                if isinstance(r, dict):
                    o, a = r["ours"], r["pomdpsol_at_our_cpu_seconds"]
                    print(
                        f"  {name} {f}: ours [{o['lower_bound']:.4f}, {o['upper_bound']:.4f}] in "
                        f"{o['cpu_seconds']:.1f} s CPU, pomdpsol then [{a[1]:.4f}, {a[2]:.4f}]: gap ratio "
                        f"{r['gap_ratio_same_cpu']:.3f} (before {r['gap_ratio_before']}) {r['target_met']}"
                    )
        elif name in ("appl_small", "appl_parse"):
            for f, r in c.items():
                if isinstance(r, dict):
                    print(
                        f"  {name} {f}: "
                        + ", ".join(f"{k} {v:.3g}" for k, v in r.items() if isinstance(v, float))
                    )
        elif name == "rocksample_7_8":
            o = c["ours"]
            print(
                f"{name:<18}{o['lower_bound']:>12.4f}{o['upper_bound']:>12.4f}{o['gap']:>10.3f}"
                f"{o['solve_seconds']:>10.1f}  {c['target_met']}  "
                f"pomdpsol at our CPU {c['pomdpsol_at_our_cpu_seconds']}"
            )
        elif name == "rocksample_11_11":
            print(
                f"{name:<18}{c['lower_bound']:>12.4f}{c['upper_bound']:>12.4f}{c['gap']:>10.3f}"
                f"{c['solve_seconds']:>10.1f}  {c['target_met']}  first {c['first']}, peak {c['peak_mib']:.0f} MiB"
            )
        elif name == "tiger_finite":
            for h, r in c["horizons"].items():
                print(
                    f"  h={h:<14}{r['value']:>12.6f}{r['reference']:>12.6f}{'':>10}{r['seconds']:>10.3f}  "
                    f"{r['value_matches']}  alphas {r['alphas']} (reference {r['reference_alphas']})"
                )
        else:
            print(
                f"{name:<18}{c['lower_bound']:>12.6f}{c['upper_bound']:>12.6f}{c['gap']:>10.2e}"
                f"{c['seconds']:>10.2f}  {c['target_met']}"
                + (
                    f"  native [{c['native_lower']:.6f}, {c['native_upper']:.6f}]"
                    if name == "trim_default"
                    else ""
                )
            )
    print(f"\nmachine: {results['machine']}; results in {args.out}")


if __name__ == "__main__":
    main()
