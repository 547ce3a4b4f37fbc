"""What the Julia side reports in text: pomdpsol's console log and the package versions string."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["parse_julia_versions", "parse_pomdpsol_log"]


def parse_pomdpsol_log(text: str) -> dict[str, Any]:
    """Read the final bounds and the stop reason from pomdpsol's console output.

    pomdpsol prints a table ``Time |#Trial |#Backup |LBound |UBound |Precision |#Alphas |#Beliefs`` while it
    runs, then ``SARSOP finishing ...`` with the stop reason (``target precision reached`` or ``Preset timeout
    reached``) and the table's final row once more. LBound and UBound are bounds on ``V*(b0)``.

    Returns
    -------
    dict
        ``lower``, ``upper``, ``gap``, ``time``, ``trials``, ``backups``, ``n_alphas``, ``n_beliefs`` from the
        last table row (``nan``/``-1`` if there is none), ``lower_text`` and ``upper_text`` (the bounds as
        printed, for their resolution; ``""`` if none) and ``stop_reason`` (``"precision"``, ``"timeout"``,
        ``"memory"``, or ``None`` if the log does not say).
    """
    out: dict[str, Any] = {
        "lower": math.nan,
        "upper": math.nan,
        "gap": math.nan,
        "time": math.nan,
        "trials": -1,
        "backups": -1,
        "n_alphas": -1,
        "n_beliefs": -1,
        "stop_reason": None,
        "lower_text": "",
        "upper_text": "",
    }
    last_row = None
    last_tokens: list[str] = []
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) != 8:
            continue
        try:
            values = [float(tok) for tok in tokens]
        except ValueError:
            continue
        last_row, last_tokens = values, tokens
    if last_row is not None:
        t, trials, backups, lb, ub, gap, n_alphas, n_beliefs = last_row
        out.update(
            time=t,
            trials=int(trials),
            backups=int(backups),
            lower=lb,
            upper=ub,
            gap=gap,
            n_alphas=int(n_alphas),
            n_beliefs=int(n_beliefs),
            lower_text=last_tokens[3],
            upper_text=last_tokens[4],
        )
    lowered = text.lower()
    finish = lowered.rfind("sarsop finishing")
    tail = lowered[finish:] if finish >= 0 else lowered
    reasons = {
        "precision": tail.rfind("target precision reached"),
        "timeout": tail.rfind("timeout reached"),
        "memory": tail.rfind("memory limit"),
    }
    found = {k: v for k, v in reasons.items() if v >= 0}
    if found:
        # after "SARSOP finishing" the first reason named is the one; without it, the last one printed
        pick = min if finish >= 0 else max
        out["stop_reason"] = pick(found, key=lambda k: found[k])
    return out


def parse_julia_versions(text: str) -> dict[str, str]:
    """``"julia=1.10.4;POMDPs=1.0.0"`` -> ``{"julia": "1.10.4", "julia:POMDPs": "1.0.0"}`` (for policy cards)."""
    out = {}
    for part in (text or "").split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            out[f"julia:{key.strip()}" if key.strip() != "julia" else "julia"] = value.strip()
    return out
