"""Scoring ProcessBench with a PRM, resumably, and the scored steps an observation model is fitted on.

:func:`score_processbench` scores every item of the chosen splits with a PRM backend and appends the results,
one batch at a time, to a scored-items file (:mod:`trim_pomdp.datasets.scored`), so that an interrupted run
resumes where it stopped. :func:`processbench_scores` gets scored items from one of the three sources that
``trim-pomdp fit-observations`` offers (a scores file, a PRM run now, or the simulated
:class:`~trim_pomdp.prm.synthetic.SyntheticPRM`) together with the card entries that say where they came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trim_pomdp._internal.progress import Progress
from trim_pomdp.datasets.processbench import HUB_DATASET, SPLITS, ProcessBenchItem, load_processbench
from trim_pomdp.datasets.scored import ScoredItem, load_scored_items, save_scored_items, select_splits
from trim_pomdp.exceptions import DataFormatError, InvalidParameterError, TrimPomdpError
from trim_pomdp.prm.base import PRMBackend

__all__ = [
    "DEFAULT_EXCLUDED_SPLITS",
    "REPLACE_WITH_REAL_SCORES",
    "ScoreSource",
    "check_scoring_extras",
    "processbench_scores",
    "score_processbench",
]

#: Splits left out of a fit unless asked for: ProcessBench's ``math`` problems are MATH test problems, and
#: MATH-500 (the evaluation set of the TRIM paper and of ``trim-pomdp run``) is drawn from the same test set.
DEFAULT_EXCLUDED_SPLITS: tuple[str, ...] = ("math",)
#: Why :data:`DEFAULT_EXCLUDED_SPLITS` are left out, for cards.
EXCLUSION_REASON = (
    "ProcessBench's math split holds MATH test problems, which overlap MATH-500 (the evaluation set)"
)


def check_scoring_extras(data_dir: str | os.PathLike[str] | None) -> None:
    """Fail before any data is loaded when what scoring with a transformers PRM needs is missing.

    torch and transformers (the ``hf`` extra), and ``datasets`` (the ``data`` extra) when ProcessBench comes
    from the hub (no ``data_dir``).
    """
    from trim_pomdp._internal.optional import require

    require("torch", "hf", "scoring with a transformers PRM")
    require("transformers", "hf", "scoring with a transformers PRM")
    if data_dir is None:
        require("datasets", "data", "loading ProcessBench from the Hugging Face hub")


#: The two commands that replace simulated scores with a real PRM's, recorded in the cards of simulated models.
REPLACE_WITH_REAL_SCORES = (
    "trim-pomdp score-processbench --prm Qwen/Qwen2.5-Math-PRM-7B --out scores.jsonl",
    "trim-pomdp fit-observations --bench processbench --scores scores.jsonl --out DIR",
)


def _first_per_split(items: list[ProcessBenchItem], limit: int | None) -> list[ProcessBenchItem]:
    if limit is None:
        return items
    kept: list[ProcessBenchItem] = []
    seen: dict[str, int] = {}
    for it in items:
        seen[it.split] = seen.get(it.split, 0) + 1
        if seen[it.split] <= limit:
            kept.append(it)
    return kept


def _already_scored(out: Path, prm_name: str) -> set[tuple[str, str]]:
    """``(split, id)`` of the items already in ``out``; an error when they were scored by another PRM."""
    if not out.exists():
        return set()
    try:
        previous = load_scored_items(out, ignore_torn_tail=True)
    except DataFormatError as exc:
        raise DataFormatError(f"{exc}\nFix or remove {out}, or choose another --out.") from None
    others = sorted({str(p.prm) for p in previous if p.prm not in (None, prm_name)})
    if others:
        raise InvalidParameterError(
            f"{out} holds scores of another PRM ({', '.join(others)}); choose another --out for {prm_name}"
        )
    return {(p.item.split, p.item.id) for p in previous}


def score_processbench(
    prm_name: str,
    out: str | os.PathLike[str],
    *,
    splits: Sequence[str] = SPLITS,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = True,
    backend: PRMBackend | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
) -> list[ScoredItem]:
    """Score ProcessBench with a PRM into the scored-items file ``out``, skipping the items already in it.

    Parameters
    ----------
    prm_name : str
        Hub id or local folder of a PRM in the Qwen2.5-Math-PRM format (loaded with
        :meth:`~trim_pomdp.prm.transformers_backend.TransformersPRM.from_pretrained` when there is work to do),
        and the name recorded with every score.
    out : path-like
        The JSONL file; each finished batch is appended to it.
    splits : sequence of str
        ProcessBench splits (default all four).
    data_dir : path-like, optional
        A folder with ProcessBench's ``<split>.json`` files; default the hub.
    limit : int, optional
        Score only the first ``limit`` items of each split.
    batch_size, device, dtype, trust_remote_code
        How the PRM is loaded and run.
    backend : PRMBackend, optional
        An already loaded backend to use instead of loading ``prm_name``.
    log : callable, optional
        Receives one line saying how many items are selected, already scored and left to score.
    progress : bool, default True
        Report progress while scoring.

    Returns
    -------
    list of ScoredItem
        Everything in ``out`` that belongs to ``splits`` (earlier runs included).

    Raises
    ------
    DataFormatError
        ``out`` exists but is not a readable scored-items file.
    InvalidParameterError
        ``out`` holds scores of another PRM.
    """
    out = Path(out)
    chosen = list(splits) or list(SPLITS)
    if backend is None:  # before minutes of loading: is the backend installed at all?
        check_scoring_extras(data_dir)
    items = _first_per_split(load_processbench(chosen, data_dir=data_dir), limit)
    done = _already_scored(out, prm_name)
    todo = [it for it in items if (it.split, it.id) not in done]
    if log is not None:
        log(
            f"{len(items)} ProcessBench items selected, {len(items) - len(todo)} already in {out}, {len(todo)} to score"
        )
    if todo:
        if backend is None:
            from trim_pomdp.prm.transformers_backend import TransformersPRM

            backend = TransformersPRM.from_pretrained(
                prm_name,
                device=device,
                dtype=dtype,
                trust_remote_code=trust_remote_code,
                batch_size=batch_size,
            )
        _score_in_batches(backend, todo, prm_name, out, batch_size, progress)
    return [s for s in load_scored_items(out) if s.item.split in chosen] if out.exists() else []


def _score_in_batches(
    backend: PRMBackend, todo: list[Any], prm_name: str, out: Path, batch_size: int, progress: bool
) -> None:
    """Score ``todo`` batch by batch, appending each finished batch to ``out`` (so an interrupted run resumes)."""
    with Progress(len(todo), "scoring", enabled=progress, unit="items") as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            try:
                scores = backend.score_batch([(it.problem, it.steps) for it in chunk])
            except TrimPomdpError as exc:
                exc.args = (f"while scoring {chunk[0].id}…{chunk[-1].id}: {exc}",)
                raise
            scored = [ScoredItem(it, s, prm=prm_name) for it, s in zip(chunk, scores, strict=True)]
            save_scored_items(out, scored, append=True)
            bar.advance(len(chunk))


@dataclass
class ScoreSource:
    """Scored ProcessBench items and the card entries that say where their scores came from."""

    items: list[ScoredItem]
    card: dict[str, Any] = field(default_factory=dict)


def _from_file(
    scores: Path, include: list[str] | None, exclude: Sequence[str], prm_name: str | None
) -> ScoreSource:
    scored = select_splits(load_scored_items(scores), include, exclude, source=str(scores))
    names = sorted({s.prm for s in scored if s.prm})
    return ScoreSource(
        scored,
        {
            "prm": prm_name or (", ".join(names) if names else f"unknown (scores from {scores.name})"),
            "simulated": any(s.simulated for s in scored),
            "data_source": f"scored items {scores.name}",
            "scores_file": scores.name,
        },
    )


def _from_synthetic(chosen: list[str], data_dir: Path | None, data_source: str, seed: int) -> ScoreSource:
    from trim_pomdp.prm.synthetic import SyntheticPRM

    prm = SyntheticPRM()
    scored = prm.score_items(load_processbench(chosen, data_dir=data_dir), seed=seed)
    prm_card = prm.card
    return ScoreSource(
        scored,
        {
            "prm": prm_card["prm"],
            "prm_card": prm_card,
            "simulated": True,
            "data_source": f"ProcessBench ({data_source}) with SIMULATED PRM scores",
            "replace_with_real_scores": list(REPLACE_WITH_REAL_SCORES),
        },
    )


def processbench_scores(
    *,
    scores: str | os.PathLike[str] | None = None,
    prm: str | None = None,
    synthetic: bool = False,
    splits: Sequence[str] | None = None,
    exclude_splits: Sequence[str] = DEFAULT_EXCLUDED_SPLITS,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    prm_name: str | None = None,
    score_file: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
) -> ScoreSource:
    """Scored ProcessBench items from exactly one of three sources, with card entries describing them.

    Parameters
    ----------
    scores : path-like, optional
        A scored-items file (e.g. from ``trim-pomdp score-processbench``).
    prm : str, optional
        A PRM to score ProcessBench with now (:func:`score_processbench`, into ``score_file``, resumable).
    synthetic : bool, default False
        Simulated scores from :class:`~trim_pomdp.prm.synthetic.SyntheticPRM`; the card says so.
    splits : sequence of str, optional
        The splits to keep: any names a scores file holds (default every split in it), or ProcessBench's (default
        all four).
    exclude_splits : sequence of str
        Splits to leave out (default :data:`DEFAULT_EXCLUDED_SPLITS`; pass ``()`` to keep them).
    data_dir : path-like, optional
        A folder with ProcessBench's ``<split>.json`` files (for ``prm`` and ``synthetic``); default the hub.
    seed : int, default 0
        Seed of the simulated scores.
    prm_name : str, optional
        With ``scores``: the PRM's name for the card (default the names recorded in the file).
    score_file : path-like, optional
        With ``prm``: where the scores go (required).
    batch_size, device
        With ``prm``: how it runs.
    log : callable, optional
        With ``prm``: receives progress lines.

    Raises
    ------
    InvalidParameterError
        Not exactly one source, a split that the data does not hold (the message lists those it does), or a
        selection that leaves nothing.
    """
    given = [
        name
        for name, on in (("scores", scores is not None), ("prm", prm is not None), ("synthetic", synthetic))
        if on
    ]
    if len(given) != 1:
        raise InvalidParameterError(
            f"give exactly one score source (scores, prm or synthetic), got {given or 'none'}"
        )
    data_source = "local JSON files" if data_dir is not None else f"hub {HUB_DATASET}"
    exclusion: dict[str, Any] = {"excluded_splits": sorted(exclude_splits)}
    if set(exclude_splits) & set(DEFAULT_EXCLUDED_SPLITS):
        exclusion["exclusion_reason"] = EXCLUSION_REASON
    if scores is not None:
        source = _from_file(Path(scores), list(splits) if splits else None, exclude_splits, prm_name)
        source.card.update(exclusion)
        return source
    unknown = [s for s in (splits or ()) if s not in SPLITS]
    if unknown:
        raise InvalidParameterError(
            f"ProcessBench has no split(s) {', '.join(map(repr, unknown))}; its splits are {', '.join(SPLITS)}"
        )
    chosen = [s for s in (list(splits) if splits else list(SPLITS)) if s not in set(exclude_splits)]
    if not chosen:
        raise InvalidParameterError(
            f"no ProcessBench split left: {', '.join(map(repr, sorted(exclude_splits)))} excluded; "
            "choose others with --split / --exclude-split"
        )
    if synthetic:
        source = _from_synthetic(chosen, None if data_dir is None else Path(data_dir), data_source, seed)
        source.card.update(exclusion)
        return source
    assert prm is not None
    if score_file is None:
        raise InvalidParameterError("scoring with a PRM needs score_file, the JSONL file the scores go to")
    scored = score_processbench(
        prm, score_file, splits=chosen, data_dir=data_dir, batch_size=batch_size, device=device, log=log
    )
    return ScoreSource(
        scored,
        {
            "prm": prm,
            "simulated": False,
            "data_source": f"ProcessBench ({data_source})",
            "scores_file": Path(score_file).name,
            **exclusion,
        },
    )
