"""Table-1-style tables of a metrics summary: rich for the terminal, Markdown for files.

One row per policy; columns CPT(50%), CPT(80%), CPT(95%) as ``tokens (fraction%)`` and ΔIBC, as in the paper's
Table 1. A level the policy never reaches shows as ``unreached``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trim_pomdp.evaluation.metrics import CPT_LEVELS
from trim_pomdp.registry import ROUTERS, router_label

__all__ = ["comparison_lines", "markdown_table", "ordered_policies", "rich_table", "table_rows"]

#: Row order of the paper's tables: query-level baselines first, then the step-level routers.
_ORDER = ("random", "oracle", "automix", "thr", "agg", "seq", "pomdp")

UNREACHED = "unreached"


def ordered_policies(summary: Mapping[str, Any]) -> list[str]:
    """Policies of a summary: built-in routers in the paper's order (baselines first), then the rest."""
    names = list(summary["policies"])
    known = [n for n in _ORDER if n in names]
    return known + [n for n in names if n not in _ORDER]


def _cpt_cell(entry: Mapping[str, float] | None) -> str:
    if entry is None:
        return UNREACHED
    return f"{entry['tokens']:.2f} ({100 * entry['fraction']:.2f}%)"


def table_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """Header + one row per policy of cells: method, CPT(50/80/95%), ΔIBC, ΔIBC levels reached."""
    header = ["Method"] + [f"CPT({lv}%)" for lv in CPT_LEVELS] + ["ΔIBC", "levels"]
    rows = [header]
    for name in ordered_policies(summary):
        pol = summary["policies"][name]
        d = pol["delta_ibc"]
        rows.append(
            [router_label(name)]
            + [_cpt_cell(pol["cpt"][lv]) for lv in CPT_LEVELS]
            + ["—" if d is None else f"{d:.2f}", str(pol.get("levels_reached", ""))]
        )
    return rows


def _caption(summary: Mapping[str, Any], note: str | None) -> str:
    w, s = summary["weak"], summary["strong"]
    parts = [
        f"{summary.get('n_queries', '?')} queries; M_w accuracy {100 * w['accuracy']:.2f}%, "
        f"M_s accuracy {100 * s['accuracy']:.2f}% with {s['mean_tokens']:.1f} tokens/query (C̄_s). "
        "CPT = M_s tokens per query (% of M_s-alone tokens) to reach the PGR level on the Pareto frontier; "
        "ΔIBC averaged over the PGR levels 1..100% the frontier reaches ('levels')."
    ]
    if note:
        parts.append(note)
    return " ".join(parts)


def markdown_table(summary: Mapping[str, Any], *, note: str | None = None) -> str:
    """The table as GitHub Markdown with a caption line below it."""
    rows = table_rows(summary)
    out = [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join([" --- "] + [" ---: "] * (len(rows[0]) - 1)) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out) + "\n\n" + _caption(summary, note) + "\n"


def rich_table(summary: Mapping[str, Any], *, title: str | None = None, note: str | None = None):
    """The table as a :class:`rich.table.Table` (print it with a rich ``Console``)."""
    from rich.table import Table

    rows = table_rows(summary)
    table = Table(title=title, caption=_caption(summary, note), caption_justify="left")
    for i, h in enumerate(rows[0]):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows[1:]:
        table.add_row(*r)
    return table


def _cpt95(pol: Mapping[str, Any]) -> float | None:
    e = pol["cpt"]["95"]
    return None if e is None else e["fraction"]


def _better(a: float | None, b: float | None, lower: bool) -> str:
    """'yes' / 'no' / 'n/a' for "a beats b" (lower or higher is better); None is the worst value."""
    if a is None and b is None:
        return "n/a"
    if a is None:
        return "no"
    if b is None:
        return "yes"
    return "yes" if (a < b if lower else a > b) else "no"


def comparison_lines(summary: Mapping[str, Any]) -> list[str]:
    """Plain statements of the issue's questions, read off a summary (no judgement added).

    - does TRIM-POMDP beat TRIM-Thr on ΔIBC and on CPT(95%)?
    - does every step-level router beat every deployable query-level baseline (AutoMix-PRM, random) on ΔIBC
      and CPT(95%)? (The oracle query router looks at outcomes; it is reported as a reference.)
    """
    pols = summary["policies"]
    lines: list[str] = []

    def fmt(pol: Mapping[str, Any]) -> str:
        d = pol["delta_ibc"]
        c = _cpt95(pol)
        dd = "—" if d is None else f"{d:.2f}"
        cc = "unreached" if c is None else f"{100 * c:.2f}%"
        return f"ΔIBC {dd}, CPT(95%) {cc}"

    if "pomdp" in pols and "thr" in pols:
        p, t = pols["pomdp"], pols["thr"]
        lines.append(
            f"TRIM-POMDP vs TRIM-Thr: {fmt(p)} vs {fmt(t)} -> POMDP better on ΔIBC: "
            f"{_better(p['delta_ibc'], t['delta_ibc'], lower=False)}; on CPT(95%): "
            f"{_better(_cpt95(p), _cpt95(t), lower=True)}"
        )
    step = [n for n, r in ROUTERS.items() if r.step_level and n in pols]
    query = [n for n in ("automix", "random") if n in pols]  # the deployable ones: the oracle sees outcomes
    for s in step:
        for q in query:
            a, b = pols[s], pols[q]
            lines.append(
                f"{router_label(s)} vs {router_label(q)}: better on ΔIBC: "
                f"{_better(a['delta_ibc'], b['delta_ibc'], lower=False)}; on CPT(95%): "
                f"{_better(_cpt95(a), _cpt95(b), lower=True)}"
            )
    if "oracle" in pols:
        lines.append(f"Oracle (query) reference, which sees outcomes: {fmt(pols['oracle'])}")
    return lines
