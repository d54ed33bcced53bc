"""An owner's own models, importable as `tests.user_models:Class` (tests/test_models.py)."""

from __future__ import annotations

from torch import nn


class WideAndDeep(nn.Module):
    """A linear path beside a one-hidden-layer path, summed: no built-in kind computes it."""

    hidden = 16

    def __init__(self, in_features: int, classes: int):
        super().__init__()
        self.wide = nn.Linear(in_features, classes)
        self.deep = nn.Sequential(nn.Linear(in_features, self.hidden), nn.ReLU(), nn.Linear(self.hidden, classes))

    def forward(self, x):
        return self.wide(x) + self.deep(x)


class WiderAndDeep(WideAndDeep):
    """The same code with another hidden width: another architecture."""

    hidden = 24


class NotAModule:
    def __init__(self, in_features: int, classes: int):
        pass
