"""Deep autoencoding Gaussian mixture model (DAGMM; Zong et al., ICLR 2018).

A compression network (the CAE's encoder, a dense layer to a low-dimensional code, and the
mirrored decoder) gives z = [code, relative Euclidean distance, cosine similarity] of each image
and its reconstruction; an estimation network gives soft memberships gamma over K Gaussians.
The mixture (phi, mu, Sigma) is fitted from the memberships; the sample energy
E(z) = -log sum_k phi_k N(z; mu_k, Sigma_k) is the anomaly score.

Numerics (the study's DAGMM ran this in float16 autocast and "did not work"): every function
below runs in float32 whatever the compute dtype of the networks, Sigma_k gets a jitter * I
before its Cholesky factor, the log-determinant is 2 sum log diag(L), the Mahalanobis term a
triangular solve, and the mixture a log-sum-exp. No inverse, no determinant.

Attributes:
  FEATURES: the choices of `DAGMM.recon_features`.
  reconstruction_features: (relative Euclidean distance, cosine similarity) of x and x'.
  brain_features: the same two inside the brain, and the CAE's chosen score.
  fit_mixture: (phi, mu, Sigma) from z and memberships, with optional per-sample weights.
  energy: per-sample energy under a mixture.
  covariance_penalty: sum_k sum_j 1 / (Sigma_k + jitter I)_jj.
  DAGMM: the Flax module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from uadjax.nn import masks as masks_lib
from uadjax.nn import scores as scores_lib
from uadjax.nn.conv import ConvTranspose
from uadjax.nn.layers import DecoderBlock, EncoderBlock

FEATURES = ('study', 'brain')
# Keeps log(phi_k) finite (and its gradient non-NaN) for a component no sample belongs to.
_TINY = 1e-12


def reconstruction_features(x, r, eps: float = 1e-8):
  """Relative Euclidean distance |x - r| / (|x| + eps) and cosine similarity
  <x, r> / (|x| |r| + eps) per image, float32: (n, 2)."""
  x = x.reshape(x.shape[0], -1).astype(jnp.float32)
  r = r.reshape(r.shape[0], -1).astype(jnp.float32)
  norm_x = jnp.linalg.norm(x, axis=1)
  norm_r = jnp.linalg.norm(r, axis=1)
  relative = jnp.linalg.norm(x - r, axis=1) / (norm_x + eps)
  cosine = jnp.sum(x * r, axis=1) / (norm_x * norm_r + eps)
  return jnp.stack([relative, cosine], axis=1)


def brain_features(x, r, eps: float = 1e-8):
  """(n, 3) float32: the relative Euclidean distance and the cosine similarity of x and x'
  inside the brain mask (the head mask eroded by 3 pixels, from x itself: no skull ring, no
  background), and the mean of the 5 % largest residuals there after a 1-pixel blur (the score
  the CAE's and the SSAE's validation sets chose)."""
  x = x.astype(jnp.float32)
  r = r.astype(jnp.float32)
  brain = masks_lib.brain_mask(x)  # the default settings; once: both features use it
  inside = reconstruction_features(x * brain[..., None], r * brain[..., None], eps)
  blurred = scores_lib.gaussian_blur(scores_lib.residual_map(x, r), 1.0)
  top = scores_lib.reduce_map(blurred, brain, 'topk', 0.05)
  return jnp.concatenate([inside, top[:, None]], axis=1)


def fit_mixture(z, gamma, weights=None, eps: float = 1e-8):
  """Mixture parameters from soft memberships (the paper's phi, mu, Sigma), float32.

  Args:
    z: (n, d) samples.
    gamma: (n, K) memberships (rows sum to 1).
    weights: optional (n,) sample weights (a padding mask: 0 leaves a sample out).
    eps: keeps an empty component's mean and covariance finite.

  Returns:
    phi (K,), mu (K, d), sigma (K, d, d).
  """
  z = z.astype(jnp.float32)
  gamma = gamma.astype(jnp.float32)
  if weights is not None:
    gamma = gamma * weights.astype(jnp.float32)[:, None]
  n = jnp.maximum(jnp.sum(gamma), eps)
  mass = jnp.sum(gamma, axis=0)  # (K,)
  phi = mass / n
  mu = gamma.T @ z / (mass[:, None] + eps)
  # Centred before the outer products (two passes, not E[zz^T] - mu mu^T): the cosine feature
  # is ~0.99 with a variance of ~1e-6, which the one-pass form loses to float32 cancellation.
  diff = z[None, :, :] - mu[:, None, :]  # (K, n, d)
  sigma = jnp.einsum('kn,kni,knj->kij', gamma.T, diff, diff) / (mass[:, None, None] + eps)
  return phi, mu, sigma


def _cholesky(sigma, jitter: float):
  d = sigma.shape[-1]
  # Symmetrised first: rounding can leave Sigma a hair off symmetric, and Cholesky reads one side.
  sigma = 0.5 * (sigma + jnp.swapaxes(sigma, -1, -2))
  return jnp.linalg.cholesky(sigma + jitter * jnp.eye(d, dtype=sigma.dtype))


def component_log_densities(z, phi, mu, sigma, jitter: float = 1e-6):
  """log phi_k + log N(z_i; mu_k, Sigma_k + jitter I), float32: (n, K)."""
  z, phi, mu, sigma = (jnp.asarray(a, jnp.float32) for a in (z, phi, mu, sigma))
  d = z.shape[-1]
  chol = _cholesky(sigma, jitter)  # (K, d, d)
  log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)  # (K,)
  diff = z[None, :, :] - mu[:, None, :]  # (K, n, d)
  # Mahalanobis distance |L^-1 (z - mu)|^2 by a triangular solve per component.
  solved = jax.vmap(
    lambda chol_k, diff_k: jax.scipy.linalg.solve_triangular(chol_k, diff_k.T, lower=True)
  )(chol, diff)  # (K, d, n)
  mahalanobis = jnp.sum(jnp.square(solved), axis=1)  # (K, n)
  log_normal = -0.5 * (mahalanobis + log_det[:, None] + d * np.log(2 * np.pi))
  return (jnp.log(jnp.maximum(phi, _TINY))[:, None] + log_normal).T


def energy(z, phi, mu, sigma, jitter: float = 1e-6):
  """Sample energy -log sum_k phi_k N(z; mu_k, Sigma_k + jitter I) by log-sum-exp: (n,)."""
  return -jax.nn.logsumexp(component_log_densities(z, phi, mu, sigma, jitter), axis=1)


def covariance_penalty(sigma, jitter: float = 1e-6):
  """The paper's P(Sigma) = sum_k sum_j 1 / (Sigma_k + jitter I)_jj: a scalar, float32."""
  diag = jnp.diagonal(jnp.asarray(sigma, jnp.float32), axis1=-2, axis2=-1) + jitter
  return jnp.sum(1.0 / diag)


def empty_mixture(n_components: int, dim: int) -> dict:
  """Placeholder mixture (equal weights, zero means, identity covariances): the structure the
  fitted one replaces."""
  return {
    'phi': jnp.full((n_components,), 1.0 / n_components, jnp.float32),
    'mu': jnp.zeros((n_components, dim), jnp.float32),
    'sigma': jnp.tile(jnp.eye(dim, dtype=jnp.float32), (n_components, 1, 1)),
  }


class DAGMM(nn.Module):
  """Compression network (convolutional autoencoder with a dense code) + estimation network.

  Attributes:
    features: encoder channels (the CAE's); the decoder mirrors them.
    latent: size of the code (study: 3).
    n_components: K, the mixture's components (study: 4).
    hidden: width of the estimation network's hidden layer (the paper's 10).
    dropout: dropout rate of the autoencoder's blocks.
    estimation_dropout: dropout of the estimation network (study: 0.5).
    eps: the eps of the reconstruction features.
    recon_features: 'study' (relative distance and cosine similarity of the whole images) or
      'brain' (`brain_features`: both inside the brain mask, and the brain's top-5 % residual).
    out_channels: channels of the image.
    dtype: compute dtype of the networks; z, gamma and the outputs are float32.
  """

  features: Sequence[int] = (32, 64, 128, 256, 512)
  latent: int = 3
  n_components: int = 4
  hidden: int = 10
  dropout: float = 0.25
  estimation_dropout: float = 0.5
  eps: float = 1e-8
  recon_features: str = 'study'
  out_channels: int = 1
  dtype: Any = jnp.float32

  @property
  def z_dim(self) -> int:
    """Size of z: the code plus the reconstruction features (2, or 3 for 'brain')."""
    return self.latent + (3 if self.recon_features == 'brain' else 2)

  @nn.compact
  def __call__(self, x, *, train: bool):
    """Returns float32 {'reconstruction', 'code' (n, latent), 'z' (n, z_dim), 'gamma' (n, K)}."""
    if self.recon_features not in FEATURES:
      raise ValueError(f'model.recon_features={self.recon_features!r}; expected one of {FEATURES}.')
    image = jnp.asarray(x, jnp.float32)
    h = jnp.asarray(x, self.dtype)
    for i, f in enumerate(self.features):
      h = EncoderBlock(
        f, use_norm=i > 0, dropout=self.dropout, dtype=self.dtype, name=f'encoder_{i}'
      )(h, train=train)
    spatial = h.shape[1:]
    code = nn.Dense(self.latent, dtype=self.dtype, name='code')(h.reshape(h.shape[0], -1))
    h = nn.Dense(int(np.prod(spatial)), dtype=self.dtype, name='decode')(code)
    h = nn.leaky_relu(h.reshape(h.shape[0], *spatial), 0.2)
    n = len(self.features)
    for j, i in enumerate(range(n - 1, 0, -1)):
      h = DecoderBlock(
        self.features[i - 1],
        use_norm=i > 1,
        dropout=self.dropout,
        dtype=self.dtype,
        name=f'decoder_{j}',
      )(h, train=train)
    recon = ConvTranspose(self.out_channels, dtype=self.dtype, name='output')(h)
    recon = recon.astype(jnp.float32)
    code = code.astype(jnp.float32)
    features = brain_features if self.recon_features == 'brain' else reconstruction_features
    z = jnp.concatenate([code, features(image, recon, self.eps)], axis=1)
    # Estimation network: FC(hidden, tanh) -> Dropout -> FC(K) -> softmax (softmax in float32).
    e = nn.Dense(self.hidden, dtype=self.dtype, name='estimation_hidden')(z.astype(self.dtype))
    e = nn.Dropout(self.estimation_dropout, deterministic=not train)(jnp.tanh(e))
    logits = nn.Dense(self.n_components, dtype=self.dtype, name='estimation_out')(e)
    gamma = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return {'reconstruction': recon, 'code': code, 'z': z, 'gamma': gamma}
