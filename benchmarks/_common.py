"""What every benchmark shares: where results go and a description of the machine they were measured on.

Results go to ``benchmark-results/<name>.json`` in the repository root by default (git-ignored), so a run never
overwrites the figures the documentation quotes. Those live in ``docs/benchmarks/results/`` and are refreshed
on purpose with ``--out docs/benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmark-results"
DOCUMENTED = REPO / "docs" / "benchmarks" / "results"


def default_out(script: str) -> Path:
    """``benchmark-results/<script stem>.json``."""
    return RESULTS / f"{Path(script).stem}.json"


def machine() -> dict[str, Any]:
    """CPU count, load average, platform and Python of this machine, recorded beside every result."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        load = None
    return {
        "cpus": os.cpu_count(),
        "load_average_1_5_15": load,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def write_result(path: str | os.PathLike[str], result: dict[str, Any]) -> Path:
    """Write ``result`` (with this machine's description under ``"machine"``) as JSON to ``path``."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = dict(result)
    out.setdefault("machine", machine())
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return path
