"""Wu et al.'s distance density on the sphere, against sampling; the gradient-variance probe."""
import numpy as np
import pytest

from lib import geometry


@pytest.mark.parametrize("n", [3, 8, 32, 128])
def test_sphere_density_is_normalised_and_matches_sampled_distances(n):
    grid = np.linspace(0, 2, 20001)
    q = geometry.sphere_distance_density(grid, n)
    assert np.trapezoid(q, grid) == pytest.approx(1.0, abs=1e-3)
    d = geometry.random_sphere_distances(n, points=800, seed=1)
    analytic_mean = np.trapezoid(grid * q, grid)
    assert d.mean() == pytest.approx(analytic_mean, abs=0.01)
    hist, edges = np.histogram(d, bins=20, range=(0, 2), density=True)
    centres = (edges[1:] + edges[:-1]) / 2
    assert np.abs(hist - geometry.sphere_distance_density(centres, n)).max() < 0.15 * q.max() + 0.05


def test_density_concentrates_near_sqrt2_as_dimension_grows():
    grid = np.linspace(0, 2, 4001)
    spreads = []
    for n in (8, 32, 128):
        q = geometry.sphere_distance_density(grid, n)
        mean = np.trapezoid(grid * q, grid)
        spreads.append(np.sqrt(np.trapezoid((grid - mean) ** 2 * q, grid)))
        assert mean == pytest.approx(np.sqrt(2), abs=0.05)
    assert spreads[0] > spreads[1] > spreads[2]


def test_pairwise_distances_normalise_rows():
    x = np.array([[3.0, 0], [0, 5.0], [-2, 0]])
    np.testing.assert_allclose(geometry.pairwise_distances(x), [np.sqrt(2), 2, np.sqrt(2)], atol=1e-12)


@pytest.mark.parametrize("augment, zero", [("none", True), ("omniglot", False)])
def test_gradient_variance_comes_from_augmentation_noise(augment, zero, tmp_path, monkeypatch):
    from lib.trainer import Trainer
    from lib.config import load_profile

    monkeypatch.setenv("METRIC_RUNS", str(tmp_path))
    cfg = load_profile("smoke").run_config("omniglot", data__augment=augment, model__backbone="convnet")
    trainer = Trainer(cfg, progress=False)
    g = geometry.negative_gradient_variance(trainer, trainer.splits.test, pairs=30, augmentations=3)
    assert g["distance"].shape == g["variance"].shape == (30,)
    assert ((g["distance"] > 0) & (g["distance"] <= 2)).all()
    if zero:
        assert np.abs(g["variance"]).max() < 1e-10
    else:
        assert (g["variance"] > 1e-6).all()
