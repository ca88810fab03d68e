"""Hyperparameter search: a `search:` section of the config names distributions over config
keys, and `nnctl tune` samples them with Optuna.

`space` parses and validates the section and maps sampled values into configs; it needs
nothing beyond the config module. `study` (Optuna, the optional `tune` extra) runs the
trials in a study held by a database, on one machine or many; `figure` draws a study.
"""
