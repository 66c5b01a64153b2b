"""Tests of agehpo.data.synthetic: determinism, label marginals, images, difficulty band."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agehpo import data
from agehpo.data import DataError, FaceTable, synthetic

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def big() -> FaceTable:
    return synthetic.make_synthetic(n_samples=5000, seed=21)


def test_same_seed_same_bytes_other_seed_differs() -> None:
    a = synthetic.make_synthetic(n_samples=200, seed=3)
    b = synthetic.make_synthetic(n_samples=200, seed=3)
    c = synthetic.make_synthetic(n_samples=200, seed=4)
    assert a.pixels.tobytes() == b.pixels.tobytes() and a.digest == b.digest
    assert np.array_equal(a.age, b.age) and np.array_equal(a.gender, b.gender)
    assert a.pixels.tobytes() != c.pixels.tobytes() and a.digest != c.digest
    assert a.source == "synthetic:seed=3,n=200"


def test_schema_matches_the_csv(big: FaceTable) -> None:
    assert big.pixels.shape == (5000, data.PIXELS_PER_IMAGE) and big.pixels.dtype == np.uint8
    assert big.age.dtype == big.ethnicity.dtype == big.gender.dtype == np.int64
    assert big.age.min() >= 1 and big.age.max() <= 116
    assert set(np.unique(big.ethnicity)) == {0, 1, 2, 3, 4}
    assert set(np.unique(big.gender)) == {0, 1}
    assert data.make_synthetic(10, 1).digest == synthetic.make_synthetic(10, 1).digest


def test_label_marginals_follow_the_real_set(big: FaceTable) -> None:
    bins = np.bincount(data.age_to_bin(big.age), minlength=5) / len(big)
    np.testing.assert_allclose(bins, synthetic.AGE_BIN_SHARES, atol=0.015)
    eth = np.bincount(big.ethnicity, minlength=5) / len(big)
    np.testing.assert_allclose(eth, synthetic.ETHNICITY_SHARES, atol=0.02)
    assert abs(np.mean(big.gender == 0) - 0.523) < 0.025


def test_ages_inside_bins_look_like_utkface(big: FaceTable) -> None:
    counts = np.bincount(big.age, minlength=117)
    assert counts[1] == counts[1:10].max()  # infants dominate the first bin
    assert 24 <= np.argmax(counts[20:40]) + 20 <= 30  # mid-twenties peak
    assert counts[60:].sum() > 0 and counts[61:70].sum() > counts[80:90].sum()
    assert big.age.max() > 85


def test_images_vary_and_carry_an_age_signal(big: FaceTable) -> None:
    px = big.pixels.astype(np.float32)
    assert px.std() > 25 and px.std(axis=1).min() > 5  # no blank images
    x = data.preprocess(big.pixels, 12).numpy()
    child = data.age_to_bin(big.age) == 0
    # a least-squares linear probe already tells small children from adults
    train, test = slice(0, 4000), slice(4000, None)
    design = np.c_[x, np.ones(len(x))]
    w, *_ = np.linalg.lstsq(design[train], child[train].astype(float), rcond=None)
    accuracy = np.mean((design[test] @ w > 0.5) == child[test])
    assert accuracy > 1.0 - child[test].mean() + 0.03


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_rejects_bad_n_samples(n: object) -> None:
    with pytest.raises(DataError, match="n_samples"):
        synthetic.make_synthetic(n_samples=n)  # type: ignore[arg-type]


def test_style_changes_difficulty_knobs_only() -> None:
    plain = synthetic.make_synthetic(50, 5)
    noisy = synthetic.make_synthetic(50, 5, style=synthetic.FaceStyle(noise=0.2))
    assert np.array_equal(plain.age, noisy.age)
    assert not np.array_equal(plain.pixels, noisy.pixels)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_difficulty_band_of_the_default_set() -> None:
    """The seed's best config lands in [0.62, 0.85]; SGD at 1e-4 stays near the majority."""
    script = ROOT / "benchmarks" / "check_difficulty.py"
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=880, check=False
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert 0.62 <= result["best_val_age_accuracy"] <= 0.85, run.stdout
    assert abs(result["sgd_val_age_accuracy"] - result["majority_rate"]) <= 0.05, run.stdout
    assert result["ok"] and run.returncode == 0
