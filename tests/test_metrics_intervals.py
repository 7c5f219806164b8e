"""Wilson intervals, bootstrap weights and percentile intervals."""

import numpy as np
import pytest

from medaudit.errors import MedauditError
from medaudit.metrics import wilson_interval
from medaudit.metrics.intervals import percentile_ci, proportion, stratified_weights

# Newcombe (1998), Stat Med 17:857-872, Table I, method 3 (Wilson score, no continuity correction).
NEWCOMBE = [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)]


@pytest.mark.parametrize(("k", "n", "low", "high"), NEWCOMBE)
def test_wilson_matches_newcombe_table(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)
    assert isinstance(lo, float)


def test_wilson_vectorised_and_undefined():
    k = np.array([81, 15, 0, 1, 0])
    n = np.array([263, 148, 20, 29, 0])
    lo, hi = wilson_interval(k, n)
    for i, (_, _, a, b) in enumerate(NEWCOMBE):
        assert lo[i] == pytest.approx(a, abs=5e-5) and hi[i] == pytest.approx(b, abs=5e-5)
    assert np.isnan(lo[-1]) and np.isnan(hi[-1])


def test_wilson_alpha_and_bad_input():
    lo90, hi90 = wilson_interval(81, 263, alpha=0.10)
    lo95, hi95 = wilson_interval(81, 263)
    assert lo95 < lo90 < 81 / 263 < hi90 < hi95
    with pytest.raises(MedauditError):
        wilson_interval(5, 3)
    with pytest.raises(MedauditError):
        wilson_interval(1, 3, alpha=0)


def test_proportion_value_object():
    v = proportion(81, 263, "never")
    assert v["ci_method"] == "wilson" and v["k"] == 81 and v["n"] == 263 and v["reason"] is None
    u = proportion(0, 0, "no samples of class 'x' in y_true")
    assert u["value"] is None and u["ci_low"] is None and u["reason"].startswith("no samples")


def test_stratified_weights_keep_strata_sizes_and_are_seeded():
    sizes = [3, 0, 7, 5]
    chunks = list(stratified_weights(sizes, 10, np.random.default_rng(1), chunk=4))
    assert [c.shape for c in chunks] == [(15, 4), (15, 4), (15, 2)]
    w = np.concatenate(chunks, axis=1)
    assert np.array_equal(w[:3].sum(0), np.full(10, 3))
    assert np.array_equal(w[3:10].sum(0), np.full(10, 7))
    assert np.array_equal(w[10:].sum(0), np.full(10, 5))
    again = np.concatenate(list(stratified_weights(sizes, 10, np.random.default_rng(1), chunk=4)), axis=1)
    assert np.array_equal(w, again)
    assert not np.array_equal(w[:, 0], w[:, 1])


def test_percentile_ci_skips_undefined_and_refuses_mostly_undefined():
    x = np.column_stack([np.arange(100.0), np.where(np.arange(100) < 30, np.nan, 1.0), np.full(100, np.nan)])
    x[:60, 1] = np.nan  # 40 % defined -> no interval
    ci = percentile_ci(x)
    assert ci[0, 0] == pytest.approx(np.percentile(np.arange(100.0), 2.5))
    assert np.isnan(ci[:, 1]).all() and np.isnan(ci[:, 2]).all()
    y = np.arange(100.0)
    y[::4] = np.nan
    assert percentile_ci(y[:, None])[1, 0] == pytest.approx(np.nanpercentile(y, 97.5))


def test_wilson_bounds_exact_at_the_extremes():
    # The estimate must lie inside its interval even at k = 0 and k = n (plots and gates rely on it).
    n = np.arange(1, 301)
    low0, _ = wilson_interval(np.zeros_like(n), n)
    _, high_n = wilson_interval(n, n)
    assert np.all(low0 == 0.0) and np.all(high_n == 1.0)
