"""The statistics of the feature families against references: sklearn, hand-computed values,
brute force."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from uadjax.nn import statistics


def test_ledoit_wolf_equals_sklearn_and_batches():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 20, 30)) * rng.uniform(0.5, 2, size=30)  # n = 20 < d = 30
  mean, precision, shrinkage = statistics.ledoit_wolf(x)
  for k in range(3):
    reference = LedoitWolf().fit(x[k])
    np.testing.assert_allclose(mean[k], reference.location_, rtol=1e-10)
    np.testing.assert_allclose(shrinkage[k], reference.shrinkage_, rtol=1e-8)
    np.testing.assert_allclose(precision[k], reference.precision_, rtol=1e-6)


def test_mahalanobis_of_a_fixed_set_equals_the_hand_computed_value():
  mean = np.array([1.0, -1.0], np.float32)
  precision = np.array([[0.25, 0.0], [0.0, 1.0]], np.float32)  # variances 4 and 1
  x = np.array([[3.0, 0.0], [1.0, -1.0]], np.float32)
  # (2^2 / 4 + 1^2 / 1) = 2 -> sqrt 2; the mean itself -> 0.
  np.testing.assert_allclose(
    statistics.mahalanobis(x, mean, precision), [np.sqrt(2.0), 0.0], rtol=1e-6
  )
  # One Gaussian per position: (n, positions, d) against (positions, d) and (positions, d, d).
  # Both positions see (3, 0); the second's precision is 4 times the first's: twice the distance.
  images = np.stack([np.stack([x[0], x[0]]), np.stack([x[1], x[1]])])
  per_position = statistics.mahalanobis(
    images, np.stack([mean, mean]), np.stack([precision, 4 * precision])
  )
  np.testing.assert_allclose(per_position, [[np.sqrt(2.0), 2 * np.sqrt(2.0)], [0.0, 0.0]], 1e-6)


def test_the_coreset_keeps_the_farthest_points_of_a_toy_set():
  rng = np.random.default_rng(0)
  cluster = rng.normal(scale=0.1, size=(200, 5))
  outliers = np.array([[10.0, 0, 0, 0, 0], [0, -10.0, 0, 0, 0], [0, 0, 0, 10.0, 10.0]])
  points = np.concatenate([cluster, outliers]).astype(np.float32)
  chosen = np.asarray(
    jax.jit(statistics.k_center_greedy, static_argnums=(1, 3))(points, 4, jax.random.PRNGKey(0), 0)
  )
  assert len(set(chosen.tolist())) == 4
  assert {200, 201, 202} <= set(chosen.tolist())


def test_the_coreset_with_a_projection_still_covers_the_outliers():
  rng = np.random.default_rng(1)
  points = rng.normal(scale=0.1, size=(300, 256)).astype(np.float32)
  points[7] += 20.0
  points[123] -= 20.0
  chosen = statistics.k_center_greedy(points, 3, jax.random.PRNGKey(2), projection=32)
  assert {7, 123} <= set(np.asarray(chosen).tolist())


@pytest.mark.parametrize('k, chunk', [(1, 7), (3, 64)])
def test_nearest_distances_equal_brute_force(k, chunk):
  rng = np.random.default_rng(0)
  queries = rng.normal(size=(50, 6)).astype(np.float32)
  bank = rng.normal(size=(40, 6)).astype(np.float32)
  brute = np.sort(np.linalg.norm(queries[:, None] - bank[None], axis=-1), axis=1)[:, :k]
  got = statistics.nearest_distances(queries, bank, k=k, chunk=chunk)
  np.testing.assert_allclose(got, brute, rtol=1e-4, atol=1e-4)


def test_patch_maps_reach_the_image_size():
  cells = np.zeros((2, 4, 4), np.float32)
  cells[0, 1, 2] = 1.0
  maps = np.asarray(statistics.patch_map(cells, 32, sigma=2.0))
  assert maps.shape == (2, 32, 32)
  assert np.unravel_index(np.argmax(maps[0]), (32, 32))[1] > 16  # the hot cell's side
  assert np.allclose(maps[1], 0.0)


def test_nearest_cosine_distances_match_a_brute_force_and_skip_invalid_rows():
  rng = np.random.default_rng(0)
  queries = statistics.unit_rows(rng.normal(size=(37, 8)))
  bank = statistics.unit_rows(rng.normal(size=(50, 8)))
  valid = np.ones(50, np.float32)
  valid[10:20] = 0
  got = statistics.nearest_cosine_distances(queries, bank, valid, chunk=8)
  similarity = np.asarray(queries) @ np.asarray(bank).T
  similarity[:, 10:20] = -np.inf
  np.testing.assert_allclose(got, 1.0 - similarity.max(axis=1), rtol=1e-5, atol=1e-6)
  # A query equal to an invalid row does not match it.
  own = statistics.nearest_cosine_distances(bank[12:13], bank, valid)
  assert float(own[0]) > 1e-3
  assert float(statistics.nearest_cosine_distances(bank[3:4], bank, valid)[0]) < 1e-5


def test_top_fraction_mean_averages_the_largest_inside_cells():
  cells = jnp.asarray([[5.0, 1.0, 2.0, 9.0], [1.0, 2.0, 3.0, 4.0]])
  inside = jnp.asarray([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
  # Row 0: 9 is outside; 30 % of 3 cells rounds up to 1 cell (5). Row 1: of 4, to 2 (4, 3).
  np.testing.assert_allclose(statistics.top_fraction_mean(cells, inside, 0.3), [5.0, 3.5])
  np.testing.assert_allclose(statistics.top_fraction_mean(cells, inside, 0.5), [3.5, 3.5])
  np.testing.assert_allclose(statistics.top_fraction_mean(cells, inside, 1.0), [8 / 3, 2.5])
