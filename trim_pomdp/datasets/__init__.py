"""Data loading.

- :mod:`~trim_pomdp.datasets.processbench`: ProcessBench items and the hidden class of every step;
- :mod:`~trim_pomdp.datasets.scored`: items with PRM scores, their JSONL files and the flat step table;
- :mod:`~trim_pomdp.datasets.problems`: the math evaluation sets of ``trim-pomdp run``;
- :mod:`~trim_pomdp.datasets.answers`: extracting and checking final answers.
"""
