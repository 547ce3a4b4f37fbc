"""POMDP file formats: Cassandra ``.pomdp`` and APPL ``.pomdpx`` to and from a ``TabularPOMDP``."""

from __future__ import annotations

from pathlib import Path

from trim_pomdp.exceptions import DataFormatError, InvalidParameterError
from trim_pomdp.solvers.formats.cassandra import parse_cassandra, read_cassandra, write_cassandra
from trim_pomdp.solvers.formats.pomdpx import (
    FactoredPOMDP,
    parse_pomdpx,
    read_factored,
    read_pomdpx,
    write_pomdpx,
)
from trim_pomdp.solvers.tabular import TabularPOMDP

__all__ = [
    "FORMATS",
    "FactoredPOMDP",
    "parse_cassandra",
    "parse_pomdpx",
    "read_cassandra",
    "read_factored",
    "read_pomdp",
    "read_pomdpx",
    "write_cassandra",
    "write_pomdp",
    "write_pomdpx",
]

#: format name -> file suffix written by :func:`write_pomdp`
FORMATS = {"pomdp": ".pomdp", "pomdpx": ".pomdpx"}


def _sniff(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".pomdpx" or suffix == ".xml":
        return "pomdpx"
    if suffix == ".pomdp":
        return "pomdp"
    try:
        with path.open("rb") as fh:
            head = fh.read(512).lstrip()
    except OSError as exc:
        raise DataFormatError(f"cannot read {path}: {exc}") from exc
    return "pomdpx" if head.startswith(b"<") else "pomdp"


def read_pomdp(
    path: str | Path,
    *,
    memory_limit: int | float | str | None = None,
    representation: str = "auto",
    deadline: float | None = None,
) -> TabularPOMDP:
    """Read a ``.pomdp`` (Cassandra) or ``.pomdpx`` (APPL XML) file into a :class:`TabularPOMDP`.

    The format is chosen by the suffix (``.pomdp``/``.POMDP`` or ``.pomdpx``/``.xml``) and otherwise by the
    content (XML starts with ``<``). Both readers stream the file and build ``T`` and ``O`` sparsely (a
    ``.pomdpx`` file through its factored tables), with memory proportional to the nonzeros.

    Parameters
    ----------
    path : str or Path
        The model file.
    memory_limit : int, float or str, optional
        Refuse, before allocating it, a model that would need more memory (bytes, or ``"8G"``; default 4 GiB or
        the ``TRIM_POMDP_MEMORY_LIMIT`` environment variable; see :mod:`trim_pomdp.solvers.memory`).
    representation : {"auto", "dense", "sparse"}, default "auto"
        ``T`` and ``O`` as dense arrays or per-action sparse matrices; ``"auto"`` keeps small or dense models
        dense (:func:`~trim_pomdp.solvers.tabular.choose_representation`).
    deadline : float, optional
        A ``time.perf_counter()`` value after which reading stops with ``ResourceLimitError``.

    Returns
    -------
    TabularPOMDP
        ``T[a, s, s']``, ``O[a, s', o]``, expected rewards ``R[s, a]`` (costs negated), ``b0`` and the
        discount; names where the file gives them; ``meta["source"]`` and ``meta["format"]``.

    Raises
    ------
    DataFormatError
        If the file cannot be read or parsed; the message names the line (or XML element) and what was
        expected.
    ResourceLimitError
        If the model would exceed ``memory_limit`` (the message gives both sizes), or reading passes
        ``deadline``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path} does not exist or is not a file")
    reader = read_pomdpx if _sniff(path) == "pomdpx" else read_cassandra
    return reader(path, memory_limit=memory_limit, representation=representation, deadline=deadline)


def write_pomdp(model: TabularPOMDP, path: str | Path, format: str | None = None) -> Path:
    """Write ``model`` sparse in Cassandra (``format="pomdp"``) or APPL XML (``format="pomdpx"``) form.

    Both are readable by APPL ``pomdpsol`` and SARSOP.jl and read back by :func:`read_pomdp` to the same arrays.

    Parameters
    ----------
    model : TabularPOMDP
        The model to write.
    path : str or Path
        The file to write (its folder is created).
    format : {"pomdp", "pomdpx"}, optional
        ``None`` takes it from the suffix of ``path`` (``.pomdpx`` or ``.xml`` → pomdpx, anything else → pomdp).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if format is None:
        format = "pomdpx" if path.suffix.lower() in (".pomdpx", ".xml") else "pomdp"
    if format not in FORMATS:
        raise InvalidParameterError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    return write_pomdpx(model, path) if format == "pomdpx" else write_cassandra(model, path)
