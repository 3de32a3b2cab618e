"""DAGMM: the energy against scipy, the covariance penalty by hand, the mixture fit, the network."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from uadjax import families
from uadjax.families.dagmm import DAGMM
from uadjax.families.dagmm import model as dagmm_lib
from uadjax.families.dagmm.task import DAGMMTask
from uadjax.nn import masks


def _mixture(seed=0, k=3, d=4):
  rng = np.random.default_rng(seed)
  phi = rng.dirichlet(np.ones(k))
  mu = rng.normal(size=(k, d)) * 3
  a = rng.normal(size=(k, d, d))
  sigma = a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)
  return phi, mu, sigma


def test_energy_is_minus_log_of_scipys_mixture_density():
  phi, mu, sigma = _mixture()
  z = np.random.default_rng(1).normal(size=(7, 4)) * 2
  density = sum(phi[k] * stats.multivariate_normal(mu[k], sigma[k]).pdf(z) for k in range(len(phi)))
  e = dagmm_lib.energy(z, phi, mu, sigma, jitter=0.0)
  assert e.dtype == jnp.float32
  np.testing.assert_allclose(e, -np.log(density), rtol=1e-4)


def test_far_point_has_higher_energy_than_the_means():
  phi, mu, sigma = _mixture()
  e_means = dagmm_lib.energy(mu, phi, mu, sigma)
  e_far = dagmm_lib.energy(np.full((1, 4), 50.0), phi, mu, sigma)
  assert bool(jnp.all(jnp.isfinite(e_far))) and float(e_far[0]) > float(jnp.max(e_means))


def test_covariance_penalty_matches_a_hand_computation():
  sigma = np.array([[[2.0, 0.3], [0.3, 4.0]], [[0.5, 0.0], [0.0, 0.25]]])
  # 1/2 + 1/4 + 1/0.5 + 1/0.25 = 6.75; the jitter joins each diagonal entry.
  np.testing.assert_allclose(dagmm_lib.covariance_penalty(sigma, jitter=0.0), 6.75, rtol=1e-6)
  np.testing.assert_allclose(
    dagmm_lib.covariance_penalty(sigma, jitter=0.5), 1 / 2.5 + 1 / 4.5 + 1 / 1.0 + 1 / 0.75
  )


def test_fit_mixture_is_the_weighted_mean_and_covariance_and_ignores_masked_samples():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(20, 3))
  gamma = rng.dirichlet(np.ones(2), size=20)
  mask = np.r_[np.ones(15), np.zeros(5)]
  phi, mu, sigma = dagmm_lib.fit_mixture(z, gamma, weights=mask, eps=0.0)
  g = gamma[:15]
  for k in range(2):
    np.testing.assert_allclose(phi[k], g[:, k].mean(), rtol=1e-5)
    np.testing.assert_allclose(mu[k], np.average(z[:15], axis=0, weights=g[:, k]), rtol=1e-5)
    cov = np.cov(z[:15].T, aweights=g[:, k], bias=True)
    np.testing.assert_allclose(sigma[k], cov, rtol=1e-4, atol=1e-6)


def test_reconstruction_features():
  x = np.ones((1, 2, 2, 1))
  r = 2 * x
  f = dagmm_lib.reconstruction_features(x, r, eps=0.0)
  np.testing.assert_allclose(f, [[1.0, 1.0]], rtol=1e-6)  # |x - 2x| / |x| = 1; same direction


def test_model_outputs_and_registries():
  model = DAGMM(features=(8, 16), latent=3, n_components=4)
  x = jnp.zeros((5, 16, 16, 1))
  variables = jax.jit(lambda x: model.init({'params': jax.random.PRNGKey(0)}, x, train=False))(x)
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert out['reconstruction'].shape == x.shape and out['z'].shape == (5, 5)
  assert out['gamma'].shape == (5, 4)
  np.testing.assert_allclose(jnp.sum(out['gamma'], axis=1), 1.0, rtol=1e-5)
  assert variables['params']['code']['kernel'].shape == (4 * 4 * 16, 3)
  assert families.get('dagmm').model is DAGMM and families.get('dagmm').task is DAGMMTask


def test_brain_features_see_the_brain_and_not_the_background():
  yy, xx = np.mgrid[:32, :32]
  disc = (((yy - 16) ** 2 + (xx - 16) ** 2) < 12**2).astype(np.float32) * 0.8
  x = np.stack([disc, disc])[..., None]
  r = x.copy()
  r[0, 1, 1, 0] = 1.0  # background: outside the head, ignored
  r[1, 16, 16, 0] = 0.0  # the brain's centre
  f = np.asarray(dagmm_lib.brain_features(jnp.asarray(x), jnp.asarray(r), eps=0.0))
  np.testing.assert_allclose(f[0], [0.0, 1.0, 0.0], atol=1e-6)
  brain = np.asarray(masks.brain_mask(jnp.asarray(x[1:]), 0.1, 3))[0]
  n = brain.sum()
  assert brain[16, 16] and not brain[1, 1] and n < (disc > 0).sum()
  np.testing.assert_allclose(f[1, 0], 0.8 / (0.8 * np.sqrt(n)), rtol=1e-5)  # |x - r| / |x|
  assert 0.0 < f[1, 2] and f[1, 1] < 1.0
  model = DAGMM(features=(8, 16), latent=2, n_components=2, recon_features='brain')
  shapes = jax.eval_shape(
    lambda x: model.apply(
      model.init({'params': jax.random.PRNGKey(0)}, x, train=False), x, train=False
    ),
    jnp.asarray(x),
  )
  assert shapes['z'].shape == (2, model.z_dim) == (2, 5)
