"""Statistics fitted to features, shared by every feature family (`uadjax.train.features`).

Attributes:
  ledoit_wolf: shrunk covariances (batched), their means and precisions, in float64 on the host.
  mahalanobis: the distance of features to a Gaussian (batched over positions), in JAX.
  k_center_greedy: PatchCore's greedy coreset: the indices of points that cover a set.
  nearest_distances: each query's distance to its nearest bank rows, in query chunks.
  unit_rows, nearest_cosine_distances: each query's cosine distance to its nearest bank row,
    as chunked matrix products (the patch kNN's).
  top_fraction_mean: an image score: the mean of the largest fraction of its cell scores.
  patch_map: patch scores on a feature grid -> a map at the image's size, blurred.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from uadjax.nn.scores import gaussian_blur


def ledoit_wolf(x: np.ndarray):
  """Means, Ledoit-Wolf shrunk covariances and their inverses of samples `x` (..., n, d).

  The covariance of n samples in d dimensions is singular when n <= d (90 training normals, 768
  pooled channels); Ledoit and Wolf's (2004) shrinkage towards a scaled identity,
  (1 - s) S + s tr(S) / d I with s estimated from the samples (sklearn's formula, batched over
  the leading axes), makes it invertible without a tuned constant. Float64: the inverse of a
  badly conditioned matrix loses what float32 holds.

  Returns:
    mean (..., d), precision (..., d, d), shrinkage (...,), as float64.
  """
  x = np.asarray(x, np.float64)
  n, d = x.shape[-2:]
  mean = x.mean(axis=-2)
  xc = x - mean[..., None, :]
  cov = np.einsum('...ni,...nj->...ij', xc, xc) / n
  mu = np.trace(cov, axis1=-2, axis2=-1) / d
  x2 = xc**2
  beta_ = np.einsum('...ni,...nj->...', x2, x2) / n  # sum_ij sum_k x_ki^2 x_kj^2 / n
  delta_ = np.sum(cov**2, axis=(-2, -1))
  beta = np.minimum((beta_ - delta_) / (d * n), (delta_ - mu**2 * d) / d)
  delta = (delta_ - mu**2 * d) / d
  shrinkage = np.where(delta > 0, beta / np.where(delta > 0, delta, 1.0), 0.0)
  shrunk = (1.0 - shrinkage)[..., None, None] * cov
  shrunk += (shrinkage * mu)[..., None, None] * np.eye(d)
  return mean, np.linalg.inv(shrunk), shrinkage


def mahalanobis(x, mean, precision):
  """sqrt((x - mean)^T precision (x - mean)) of features `x` (n, ..., d) for a Gaussian whose
  `mean` (..., d) and `precision` (..., d, d) have the same middle axes (none: one Gaussian;
  PaDiM: one per patch position). Float32 (n, ...)."""
  diff = jnp.asarray(x, jnp.float32) - mean
  squared = jnp.einsum('n...i,...ij,n...j->n...', diff, precision, diff)
  return jnp.sqrt(jnp.maximum(squared, 0.0))


def _squared_distances(a, b):
  """|a - b|^2 of every row pair, by |a|^2 - 2 a.b + |b|^2 (no (na, nb, d) tensor)."""
  a2 = jnp.sum(a * a, axis=-1)[:, None]
  b2 = jnp.sum(b * b, axis=-1)[None, :]
  return jnp.maximum(a2 - 2.0 * a @ b.T + b2, 0.0)


def k_center_greedy(points, k: int, key, projection: int = 128):
  """Indices (k,) int32 of a greedy k-center coreset of `points` (N, D), as PatchCore's.

  Starting from a random point, each step adds the point farthest from those chosen so far, so
  the coreset covers the set (every point is near a chosen one) and keeps its outliers. With
  D > `projection`, distances are measured after a random Gaussian projection to `projection`
  dimensions (Johnson-Lindenstrauss: about the same distances, a fraction of the cost), as
  PatchCore does. Pure JAX: jit it with `k` static.
  """
  points = jnp.asarray(points, jnp.float32)
  project_key, start_key = jax.random.split(key)
  if projection and points.shape[1] > projection:
    matrix = jax.random.normal(project_key, (points.shape[1], projection)) / jnp.sqrt(projection)
    points = points @ matrix
  start = jax.random.randint(start_key, (), 0, points.shape[0])

  def distances_to(j):
    return jnp.sum((points - points[j]) ** 2, axis=-1)

  def step(i, carry):
    chosen, nearest = carry
    j = jnp.argmax(nearest).astype(jnp.int32)
    return chosen.at[i].set(j), jnp.minimum(nearest, distances_to(j))

  chosen = jnp.zeros(k, jnp.int32).at[0].set(start)
  chosen, _ = jax.lax.fori_loop(1, k, step, (chosen, distances_to(start)))
  return chosen


def nearest_distances(queries, bank, k: int = 1, chunk: int = 2048):
  """Euclidean distances (q, k) of each query row to its `k` nearest rows of `bank` (m, d),
  ascending, computed over chunks of `chunk` queries (memory chunk x m, never q x m x d)."""
  bank = jnp.asarray(bank, jnp.float32)

  def one(block):
    d2 = _squared_distances(block, bank)
    return jnp.sqrt(-jax.lax.top_k(-d2, k)[0])

  return _over_query_chunks(one, queries, chunk)


def _over_query_chunks(fn, queries, chunk: int):
  """`fn(block)` of each block of `chunk` rows of `queries` (float32), concatenated; the last
  block padded (one compiled shape), its padding dropped."""
  queries = jnp.asarray(queries, jnp.float32)
  q = queries.shape[0]
  chunk = max(1, min(chunk, q))
  padded = -(-q // chunk) * chunk
  rows = jnp.pad(queries, ((0, padded - q), (0, 0))).reshape(padded // chunk, chunk, -1)
  out = jax.lax.map(fn, rows)
  return out.reshape(padded, *out.shape[2:])[:q]


def unit_rows(x, eps: float = 1e-6):
  """Rows of `x` (..., d) scaled to unit length (a zero row stays zero)."""
  x = jnp.asarray(x, jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def nearest_cosine_distances(queries, bank, valid=None, chunk: int = 512):
  """1 - the largest cosine similarity (q,) of each query row to a row of `bank` (m, d), both
  already unit rows (`unit_rows`); rows of `bank` where `valid` (m,) is 0 never match.

  Computed as matrix products over chunks of `chunk` queries: memory chunk x m floats (never
  q x m), time q x m x d multiply-adds: linear in the number of queries for a bank of bounded
  size. The last chunk is padded (one compiled shape)."""
  bank = jnp.asarray(bank, jnp.float32)
  never = None if valid is None else jnp.asarray(valid) <= 0

  def one(block):
    # Full float32 products (a GPU's default would round through TF32: ~1e-3 on 1 - cos).
    similarity = jnp.matmul(block, bank.T, precision=jax.lax.Precision.HIGHEST)
    if never is not None:
      similarity = jnp.where(never[None, :], -jnp.inf, similarity)
    return 1.0 - jnp.max(similarity, axis=1)

  return _over_query_chunks(one, queries, chunk)


def top_fraction_mean(cells, inside, fraction):
  """(n,) the mean of the largest `fraction` (0, 1] of each row's cell scores (n, c) among the
  cells where `inside` (n, c) is 1 (at least one cell; cells outside never count)."""
  count = jnp.sum(inside, axis=1)
  # A hair below the product before rounding up: float32 gives 0.3 x 50 as 15.000001.
  k = jnp.maximum(jnp.ceil(fraction * count - 1e-4), 1.0)
  ranked = -jnp.sort(-jnp.where(inside > 0, cells, -jnp.inf), axis=1)
  keep = jnp.arange(cells.shape[1])[None, :] < k[:, None]
  return jnp.sum(jnp.where(keep & jnp.isfinite(ranked), ranked, 0.0), axis=1) / k


def patch_map(grid_scores, size: int, sigma: float = 4.0):
  """(n, gh, gw) patch scores -> (n, size, size) float32 maps: bilinear upsampling to the
  image, then a Gaussian blur of `sigma` image pixels (PatchCore's, anomalib's: 4 at 256^2);
  0 for none."""
  n = grid_scores.shape[0]
  maps = jax.image.resize(jnp.asarray(grid_scores, jnp.float32), (n, size, size), 'bilinear')
  return gaussian_blur(maps, sigma) if sigma > 0 else maps
