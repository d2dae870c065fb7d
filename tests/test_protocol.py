"""The tuning protocol's selections against constructed validation curves: each selection
picks the minimum of its own quantity, and the grid grows until every selection's optimum
is bracketed. ``sweep`` is replaced by a closed-form stand-in, so no network is trained."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from experiments import protocol

BUDGET = protocol.BUDGETS["quick"]  # 3 rates per decade, 4 evaluations, 1 extension
WORKLOAD = protocol.WORKLOADS["mnist-logreg"]
CONFIG = protocol.Config("sgd", 32)  # first grid: 0.01 to 1 around the centre 0.1
AREA_OPTIMUM = float(f"{0.1 * 10 ** (4 / 3):.3g}")  # 2.15, one third of a decade above it


def constructed_curve(rate: float) -> np.ndarray:
    """Validation loss at the 5 evaluation points of a run at ``rate``: the final loss is
    lowest at 0.1, the loss along the way lowest at :data:`AREA_OPTIMUM` (above the first
    grid), so the two selections disagree and only an extension brackets the second."""
    x = math.log10(rate / 0.1)
    along_the_way = 0.5 + 10.0 * (x - 4 / 3) ** 2
    final = 0.3 + 0.1 * x**2
    return np.array([2.3, along_the_way, along_the_way, along_the_way, final])


@pytest.fixture
def fake_sweep(monkeypatch):
    """``protocol.sweep`` replaced by :func:`constructed_curve` (every seed alike); returns
    the list of learning-rate lists it was called with."""
    calls: list[list[float]] = []

    def sweep(factory, grid, seeds, data, **options):
        rates = [float(r) for r in grid["learning_rate"]]
        calls.append(rates)
        val = np.stack([np.stack([constructed_curve(r)] * len(seeds)) for r in rates])
        return SimpleNamespace(
            grid={"learning_rate": np.asarray(rates)},
            curves=SimpleNamespace(val_loss=val),
            seeds=np.asarray(seeds),
        )

    data = SimpleNamespace(without_test=lambda: "tuning data")
    monkeypatch.setattr(protocol, "sweep", sweep)
    monkeypatch.setattr(protocol, "data", lambda *args: data)
    for cache in ("_GRIDS", "_FINALS", "_TUNED"):
        monkeypatch.setattr(protocol, cache, {})
    return calls


def test_each_selection_minimises_its_own_quantity_and_both_are_bracketed(fake_sweep):
    by_final = protocol.tune(WORKLOAD, CONFIG, BUDGET, 0, selection="final")
    by_area = protocol.tune(WORKLOAD, CONFIG, BUDGET, 0, selection="area")
    assert by_final.best == {"learning_rate": 0.1}
    assert by_area.best == {"learning_rate": AREA_OPTIMUM}
    assert (by_final.selection, by_area.selection) == ("final", "area")
    # the first grid ends at 1.0, where the area is still falling: one decade was added
    assert by_final.extensions == by_area.extensions == 1
    assert by_final.learning_rates.max() == pytest.approx(10.0)
    assert by_area.edge is None and by_final.edge is None
    # one grid serves both selections, and each names the other's choice
    assert by_final.points is by_area.points
    assert by_final.chosen("area") == by_area.best and by_area.chosen("final") == by_final.best
    # two tuning sweeps (first grid, extension), then one final sweep per selected point
    tuning, finals = fake_sweep[:2], fake_sweep[2:]
    assert len(tuning[0]) == 7 and len(tuning[1]) == 3
    assert finals == [[0.1], [AREA_OPTIMUM]]


def test_without_extensions_the_edge_is_reported_and_tuning_is_cached(fake_sweep):
    capped = dataclasses.replace(BUDGET, max_extensions=0)
    by_final = protocol.tune(WORKLOAD, CONFIG, capped, 0, selection="final")
    by_area = protocol.tune(WORKLOAD, CONFIG, capped, 0, selection="area")
    # without an extension the area's optimum is the grid's top rate, and the report is told
    assert by_area.best == {"learning_rate": 1.0}
    assert "on the edge" in by_area.edge and by_final.edge is None
    assert fake_sweep[1:] == [[0.1], [1.0]]
    # asking again runs nothing
    assert protocol.tune(WORKLOAD, CONFIG, capped, 0, selection="area") is by_area
    assert len(fake_sweep) == 3


def test_tuning_point_scores():
    curves = np.array([[2.3, 1.0, 0.8, 0.6], [2.3, 1.2, 0.6, 0.4]])
    point = protocol.TuningPoint({"learning_rate": 0.1}, curves)
    assert point.final == pytest.approx(0.5)
    assert point.area == pytest.approx(np.mean([1.0, 0.8, 0.6, 1.2, 0.6, 0.4]))
    assert point.score("final") == point.final and point.score("area") == point.area
    # a run that blew up along the way and came back is infinitely bad only for the area
    spike = curves.copy()
    spike[0, 2] = np.inf
    spiky = protocol.TuningPoint({"learning_rate": 0.1}, spike)
    assert spiky.final == pytest.approx(0.5) and spiky.area == math.inf
    assert protocol.select([spiky, point], "final") is spiky  # the first of equals
    assert protocol.select([spiky, point], "area") is point
    with pytest.raises(ValueError, match="unknown selection"):
        point.score("steps")
    with pytest.raises(ValueError, match="unknown selection"):
        protocol.tune(WORKLOAD, CONFIG, BUDGET, 0, selection="steps")
