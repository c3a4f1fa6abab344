"""Tables as numpy columns, with pandas only on request.

The events, tasks and edges tables are dicts of equal-length numpy columns from the moment they are
built. Replaying a trace (`daydream whatif` without --opt) reads and writes a few of those columns
and never needs pandas, whose import alone takes longer than the replay itself. Analyses and
transforms that use pandas' API read the attribute and get a DataFrame, built once over the same
arrays (no copy), which from then on is the table.

    class TaskGraph:
        tasks = Frame()          # graph.tasks -> pandas DataFrame (built on first use)
    column(graph, "tasks", "dur")  # one numpy column, with or without a DataFrame
"""
from __future__ import annotations

import numpy as np


class Frame:
    """An attribute holding a table: a dict of numpy columns until read, then a pandas DataFrame."""

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:  # no class-level default (dataclasses ask)
            raise AttributeError(self.slot[1:])
        value = getattr(obj, self.slot)
        if isinstance(value, dict):
            import pandas as pd
            value = pd.DataFrame(value, copy=False)
            setattr(obj, self.slot, value)
        return value

    def __set__(self, obj, value):
        setattr(obj, self.slot, value)


def stored(obj, name: str):
    """The table `name` of `obj` as stored: a dict of numpy columns or a DataFrame."""
    return getattr(obj, "_" + name)


def column(obj, name: str, key: str) -> np.ndarray:
    """Column `key` of table `name` of `obj` as a numpy array, without building a DataFrame."""
    table = stored(obj, name)
    return table[key] if isinstance(table, dict) else table[key].to_numpy()


def n_rows(obj, name: str) -> int:
    table = stored(obj, name)
    if isinstance(table, dict):
        return len(next(iter(table.values()))) if table else 0
    return len(table)


def set_column(obj, name: str, key: str, values: np.ndarray) -> None:
    """Replace or add column `key` of table `name` of `obj`."""
    stored(obj, name)[key] = values


def take(table: dict, rows: np.ndarray) -> dict:
    """The rows `rows` (indices or a boolean mask) of a dict of columns."""
    return {k: v[rows] for k, v in table.items()}
