"""SARSOP without Julia: APPL's ``pomdpsol`` run directly (the C++ program SARSOP.jl itself drives).

* :func:`find_pomdpsol` — the binary: given, else ``TRIM_POMDP_POMDPSOL``, else ``pomdpsol`` on ``PATH``.
* :func:`run_pomdpsol` — one run in a working directory, in its own process group, with ``--timeout`` (and
  ``--memory``) passed and a hard kill ``kill_after`` seconds later; returns the policy file and the log.
* :func:`read_appl_policy` — the ``.policy`` XML file APPL writes: one alpha vector per ``<Vector>`` (or
  ``<SparseVector>``), with its action and the value of the fully observed state variables it applies to.
* :func:`flat_alphas` — those vectors over the states of the flat model (:class:`~trim_pomdp.solvers.tabular
  .TabularPOMDP` from the same file); a vector for another observed value gets the floor
  ``min R / (1 - γ)`` there, which no policy's value falls below, so it stays a valid lower bound.

**Certified bounds.** APPL prints numbers with six significant digits. Every alpha entry read back is lowered
by half a unit of its last printed digit, so it is never above the value APPL computed; the upper bound read
from the log is raised likewise (:func:`printed_resolution`). The lower bound the solver reports is then
``max_k α_k · b0`` of the vectors it returns (a real policy's value), and the upper bound still dominates
``V*(b0)``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trim_pomdp.exceptions import BackendUnavailableError, DataFormatError, SolverError
from trim_pomdp.solvers.sarsop.process import describe_exit, kill_tree, tail

__all__ = [
    "APPL_OPTIONS",
    "POMDPSOL_ENV",
    "ApplPolicy",
    "find_pomdpsol",
    "flat_alphas",
    "printed_resolution",
    "read_appl_policy",
    "run_pomdpsol",
]

#: Environment variable naming the ``pomdpsol`` binary.
POMDPSOL_ENV = "TRIM_POMDP_POMDPSOL"

#: Options of ``pomdpsol`` that may be passed through (name -> kind); time, precision, memory and the output
#: file are set by the solver itself.
APPL_OPTIONS = {"trial-improvement-factor": float, "randomization": bool, "fast": bool}

_BUILD_HINT = (
    "build APPL once (git clone https://github.com/AdaCompNUS/sarsop; add -fcommon to CFLAGS in src/Makefile "
    "for gcc >= 10; make -C sarsop/src) and put src/pomdpsol on PATH, set TRIM_POMDP_POMDPSOL, or pass "
    "pomdpsol=PATH"
)


def find_pomdpsol(path: str | os.PathLike | None = None) -> Path:
    """The ``pomdpsol`` binary to run.

    Raises
    ------
    BackendUnavailableError
        When there is none (the message says how to build APPL).
    """
    given = path if path is not None else (os.environ.get(POMDPSOL_ENV) or None)
    if given is not None:
        p = Path(given).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return p.resolve()
        raise BackendUnavailableError(f"pomdpsol {str(p)!r} is not an executable file; {_BUILD_HINT}")
    found = shutil.which("pomdpsol")
    if found is None:
        raise BackendUnavailableError(f"APPL's pomdpsol is not on PATH; {_BUILD_HINT}")
    return Path(found).resolve()


def pomdpsol_version(binary: Path) -> str:
    """The version line ``pomdpsol --version`` prints (``""`` if it prints none)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"Version\s+(\S+)", out.stdout + out.stderr)
    return m.group(1) if m else ""


def _option_args(options: dict[str, Any] | None) -> list[str]:
    args: list[str] = []
    for key, value in (options or {}).items():
        kind = APPL_OPTIONS.get(key)
        if kind is None:
            raise ValueError(f"unknown pomdpsol option {key!r}; choose from {', '.join(APPL_OPTIONS)}")
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"pomdpsol option {key!r} is a flag: give True or False, got {value!r}")
            args += [f"--{key}"] if value else []
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"pomdpsol option {key!r} needs a finite number, got {value!r}")
            args += [f"--{key}", repr(float(value))]
    return args


def run_pomdpsol(
    binary: Path,
    model_file: Path,
    workdir: Path,
    *,
    time_limit: float,
    precision: float,
    kill_after: float,
    memory_mb: int | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Path, str, float]:
    """Run ``pomdpsol`` on ``model_file`` in ``workdir``; ``(policy file, log, wall seconds)``.

    ``time_limit`` is passed as ``--timeout`` (APPL's search time: it stops, writes the policy and exits);
    the process group is killed if it is still running ``kill_after`` seconds after the start.

    Raises
    ------
    SolverError
        When pomdpsol was killed, failed or wrote no policy (with the end of its log).
    """
    policy = workdir / "out.policy"
    log_path = workdir / "pomdpsol.log"
    policy.unlink(missing_ok=True)
    cmd = [
        str(binary),
        str(model_file),
        "--timeout",
        repr(float(time_limit)),
        "--precision",
        repr(float(precision)),
    ]
    if memory_mb is not None:
        cmd += ["--memory", str(int(memory_mb))]
    cmd += [*_option_args(options), "--output", str(policy)]
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=(os.name == "posix"),
        )
        try:
            rc = proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            raise SolverError(
                f"pomdpsol did not finish within {kill_after:.0f} s (time limit {time_limit:g} s plus the allowance "
                f"for reading the model and writing the policy) and was killed{tail(log_path)}"
            ) from None
        except BaseException:  # e.g. KeyboardInterrupt: never leave pomdpsol running
            kill_tree(proc)
            raise
    seconds = time.perf_counter() - start
    text = log_path.read_text(errors="replace")
    if rc != 0 or not policy.is_file():
        raise SolverError(
            f"pomdpsol {describe_exit(rc)}"
            + ("" if policy.is_file() else " without writing a policy")
            + tail(log_path)
        )
    return policy, text, seconds


def printed_resolution(tokens: np.ndarray) -> np.ndarray:
    """Half a unit of the last printed digit of each decimal string (``"24.6954"`` → ``5e-5``, ``"7"`` → 0.5).

    ``"1.5e-05"`` → ``5e-7``; an exact ``"0"`` → 0 (APPL prints tiny numbers with an exponent, never as 0).
    """
    uniq, inv = np.unique(np.asarray(tokens, dtype=str), return_inverse=True)
    res = np.empty(len(uniq))
    for i, tok in enumerate(uniq):
        mant, _, exp = tok.lower().partition("e")
        decimals = len(mant.partition(".")[2])
        value = float(tok)
        res[i] = 0.0 if value == 0.0 else 0.5 * 10.0 ** (int(exp or 0) - decimals)
    return res[inv]


@dataclass
class ApplPolicy:
    """The alpha vectors of an APPL ``.policy`` file (entries already lowered by their print resolution).

    Attributes
    ----------
    alphas : ndarray, shape (K, vector_length)
        One vector per row, over the hidden (not fully observed) states.
    actions : ndarray of int, shape (K,)
        0-based action of each vector.
    obs_values : ndarray of int, shape (K,)
        Value of the fully observed state variables each vector applies to (0 for a flat model).
    vector_length, num_obs_value : int
    """

    alphas: np.ndarray
    actions: np.ndarray
    obs_values: np.ndarray
    vector_length: int
    num_obs_value: int


def _int_attr(el: ET.Element, name: str, where: str) -> int:
    try:
        return int(el.attrib[name])
    except (KeyError, ValueError):
        raise DataFormatError(f"{where}: <{el.tag}> needs an integer {name!r} attribute") from None


def read_appl_policy(path: str | os.PathLike) -> ApplPolicy:
    """Read an APPL ``.policy`` file (``<Vector>`` or ``<SparseVector>`` entries).

    Raises
    ------
    DataFormatError
        When the file is not such a policy, or its counts, lengths, actions or numbers are wrong.
    """
    where = str(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataFormatError(f"{where}: not a readable APPL policy file ({exc})") from None
    block = root.find("AlphaVector")
    if root.tag != "Policy" or block is None:
        raise DataFormatError(f"{where}: expected <Policy><AlphaVector ...>, got <{root.tag}>")
    L = _int_attr(block, "vectorLength", where)
    n_obs = _int_attr(block, "numObsValue", where)
    K = _int_attr(block, "numVectors", where)
    rows, tokens, actions, obs_values = [], [], [], []
    for k, el in enumerate(block):
        here = f"{where}: vector {k + 1}"
        if el.tag == "Vector":
            toks = (el.text or "").split()
            if len(toks) != L:
                raise DataFormatError(f"{here} has {len(toks)} entries, expected vectorLength={L}")
            rows.append(np.arange(L))
        elif el.tag == "SparseVector":
            pairs = [(e.text or "").split() for e in el.findall("Entry")]
            if any(len(p) != 2 for p in pairs):
                raise DataFormatError(f"{here}: every <Entry> needs an index and a value")
            try:
                idx = np.array([int(p[0]) for p in pairs], dtype=np.int64)
            except ValueError:
                raise DataFormatError(f"{here}: <Entry> indices must be integers") from None
            if len(idx) and (idx.min() < 0 or idx.max() >= L):
                raise DataFormatError(f"{here}: an <Entry> index is outside 0..{L - 1}")
            rows.append(idx)
            toks = [p[1] for p in pairs]
        else:
            continue
        tokens.append(toks)
        actions.append(_int_attr(el, "action", here))
        obs_values.append(_int_attr(el, "obsValue", here))
    if len(tokens) != K or K == 0:
        raise DataFormatError(f"{where}: {len(tokens)} vectors, but numVectors={K}")
    alphas = np.zeros((K, L))
    for k, (idx, toks) in enumerate(zip(rows, tokens, strict=True)):
        try:
            vals = np.array(toks, dtype=float)
        except ValueError:
            raise DataFormatError(f"{where}: vector {k + 1} holds something that is not a number") from None
        if not np.all(np.isfinite(vals)):
            raise DataFormatError(f"{where}: vector {k + 1} has a non-finite entry")
        alphas[k, idx] = vals - printed_resolution(np.asarray(toks))
    acts, obs = np.array(actions, dtype=np.int64), np.array(obs_values, dtype=np.int64)
    if obs.min() < 0 or obs.max() >= n_obs:
        raise DataFormatError(f"{where}: an obsValue is outside 0..{n_obs - 1}")
    if acts.min() < 0:
        raise DataFormatError(f"{where}: a negative action")
    return ApplPolicy(alphas, acts, obs, L, n_obs)


def flat_alphas(policy: ApplPolicy, observed: np.ndarray, hidden: np.ndarray, floor: float) -> np.ndarray:
    """The policy's vectors over the flat states, ``(K, S)``.

    ``observed[s]`` and ``hidden[s]`` are the fully observed value and the hidden index of flat state ``s``
    (for a flat model: 0 and ``s``). A vector gets ``floor`` at the states of other observed values.
    """
    out = np.full((len(policy.alphas), len(observed)), float(floor))
    for x in np.unique(policy.obs_values):
        ks = np.flatnonzero(policy.obs_values == x)
        states = np.flatnonzero(observed == x)
        out[np.ix_(ks, states)] = policy.alphas[np.ix_(ks, hidden[states])]
    return out
