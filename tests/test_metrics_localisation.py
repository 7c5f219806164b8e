"""Pointing game and energy inside the lesion: hand-computed cases, statsmodels/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from medaudit.metrics.localisation import (
    compare_localisation,
    localisation_summary,
    mean_difference,
    pointing_and_energy,
)


def test_pointing_and_energy_by_hand():
    masks = np.zeros((4, 2, 2), bool)
    masks[:, 0, 0] = True
    cams = np.array([
        [[1.0, 0.0], [0.0, 0.0]],  # peak inside, all energy inside
        [[0.2, 0.6], [0.1, 0.1]],  # peak outside; energy 0.2 / 1.0
        [[np.nan, 0.0], [0.0, 0.0]],  # invalid map: not evaluated
        [[0.0, 0.0], [0.0, 0.0]],  # no mass: not evaluated
    ])
    hit, energy, ok = pointing_and_energy(cams, masks)
    assert hit.tolist() == [True, False, False, False]
    assert ok.tolist() == [True, True, False, False]
    assert energy[:2] == pytest.approx([1.0, 0.2])
    assert np.isnan(energy[2:]).all()
    empty = np.zeros((1, 2, 2), bool)  # an empty mask is not evaluated either
    assert not pointing_and_energy(cams[:1], empty)[2][0]


def _fake(rng, n, p_hit):
    hit = rng.random(n) < p_hit
    energy = np.clip(rng.normal(0.4, 0.15, n), 0, 1)
    return hit, energy, np.ones(n, bool)


def test_summary_matches_references():
    rng = np.random.default_rng(1)
    labels = np.repeat([1, 2], [60, 40])
    hit, energy, ok = _fake(rng, 100, 0.7)
    ok[:5] = False  # five invalid maps
    out = localisation_summary(hit, energy, ok, labels, ["healthy", "glioma", "pituitary"], n_bootstrap=400)
    assert set(out["per_class"]) == {"glioma", "pituitary"} and out["n"] == 95 and out["n_invalid"] == 5
    for k, name in ((1, "glioma"), (2, "pituitary")):
        sel = ok & (labels == k)
        pg = out["per_class"][name]["pointing_game"]
        lo, hi = proportion_confint(int(hit[sel].sum()), int(sel.sum()), method="wilson")
        assert pg["k"] == int(hit[sel].sum()) and pg["n"] == int(sel.sum())
        assert (pg["ci_low"], pg["ci_high"]) == pytest.approx((lo, hi))
        en = out["per_class"][name]["energy_inside"]
        assert en["value"] == pytest.approx(energy[sel].mean())
        assert en["ci_low"] < en["value"] < en["ci_high"]
        # The bootstrap interval of a mean is close to mean ± 1.96 SE at n = 40-60.
        se = energy[sel].std(ddof=1) / np.sqrt(sel.sum())
        assert en["ci_high"] - en["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.25)
    assert out["overall"]["energy_inside"]["value"] == pytest.approx(energy[ok].mean())


def test_compare_matches_mcnemar_and_paired_mean():
    rng = np.random.default_rng(2)
    labels = np.ones(80, dtype=int)
    a = _fake(rng, 80, 0.85)
    b = (rng.random(80) < 0.55, np.clip(a[1] - 0.1 + rng.normal(0, 0.05, 80), 0, 1), np.ones(80, bool))
    out = compare_localisation(a, b, labels, ["healthy", "glioma"], n_bootstrap=400)["per_class"]["glioma"]
    table = [[int((a[0] & b[0]).sum()), int((a[0] & ~b[0]).sum())], [int((~a[0] & b[0]).sum()), int((~a[0] & ~b[0]).sum())]]
    ref = mcnemar(table, exact=True)
    assert out["pointing_game"]["p_value"] == pytest.approx(ref.pvalue)
    assert out["pointing_game"]["b10"] == table[0][1] and out["pointing_game"]["b01"] == table[1][0]
    assert out["pointing_game"]["diff"] == pytest.approx(a[0].mean() - b[0].mean())
    en = out["energy_inside"]
    assert en["value"] == pytest.approx((a[1] - b[1]).mean())
    assert en["ci_low"] < en["value"] < en["ci_high"] and en["ci_low"] > 0  # A concentrates more, clearly


def test_mean_difference_edge_cases():
    assert mean_difference(np.array([np.nan]), np.array([0.0]))["value"] is None
    few = mean_difference(np.array([0.5, 0.7]), np.zeros(2))
    assert few["value"] == pytest.approx(0.6) and few["ci_low"] is None and "fewer than" in few["ci_reason"]
    with pytest.raises(Exception, match="1-D"):
        mean_difference(np.zeros(3), np.zeros(4))


def test_mean_difference_coverage():
    """95% interval of a paired mean difference covers the truth in about 95% of simulated studies."""
    rng = np.random.default_rng(3)
    cover = 0
    reps = 150
    for r in range(reps):
        a = rng.beta(2, 5, 40)
        b = rng.beta(2, 5, 40)
        d = mean_difference(a, b, n_bootstrap=300, seed=r)
        cover += d["ci_low"] <= 0.0 <= d["ci_high"]
    assert 0.88 <= cover / reps <= 0.99, cover / reps
    # The exact binomial test on discordant pairs is what McNemar's exact test is.
    assert binomtest(3, 10).pvalue == pytest.approx(
        compare_localisation((np.r_[np.ones(3), np.zeros(7)].astype(bool), np.zeros(10), np.ones(10, bool)),
                             (np.r_[np.zeros(3), np.ones(7)].astype(bool), np.zeros(10), np.ones(10, bool)),
                             np.ones(10, int), ["h", "d"], n_bootstrap=0)["overall"]["pointing_game"]["p_value"])
