"""Observation models: the class-conditional densities of PRM observations that the TRIM-POMDP plans with.

- :mod:`~trim_pomdp.observation_models.kde`: :class:`~trim_pomdp.observation_models.kde.ReflectedKDE`, a
  Gaussian KDE on a box with reflection at every face and exact box masses;
- :mod:`~trim_pomdp.observation_models.bandwidth`: its rule-of-thumb bandwidths;
- :mod:`~trim_pomdp.observation_models.observation`:
  :class:`~trim_pomdp.observation_models.observation.ObservationModel`, the binned observation function, its
  artifact and the shipped model;
- :mod:`~trim_pomdp.observation_models.fitting`: fitting it on scored steps, and its held-out log-likelihood;
- :mod:`~trim_pomdp.observation_models.binning` and :mod:`~trim_pomdp.observation_models.tables`: the bins and
  the validated step arrays;
- :mod:`~trim_pomdp.observation_models.plots`: heatmaps of the class densities.
"""
