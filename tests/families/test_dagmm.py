"""DAGMM: the energy against scipy, the covariance penalty by hand, finite bfloat16 training, the
mixture fitted on the training set, and the protocol end to end (sequential and fold-parallel)."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from tests.helpers import make_config
from uadjax import checkpoint, cv
from uadjax.models import DAGMM, MODELS
from uadjax.models import dagmm as dagmm_lib
from uadjax.train import TASKS, make_task
from uadjax.train.dagmm import DAGMMTask


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
  variables = model.init({'params': jax.random.PRNGKey(0)}, x, train=False)
  out = model.apply(variables, x, train=False)
  assert out['reconstruction'].shape == x.shape and out['z'].shape == (5, 5)
  assert out['gamma'].shape == (5, 4)
  np.testing.assert_allclose(jnp.sum(out['gamma'], axis=1), 1.0, rtol=1e-5)
  assert variables['params']['code']['kernel'].shape == (4 * 4 * 16, 3)
  assert MODELS['dagmm'] is DAGMM and TASKS['dagmm'] is DAGMMTask


def test_bfloat16_training_keeps_every_loss_and_score_finite():
  config = make_config(
    'configs/headct/dagmm.py:tiny', **{'train.dtype': 'bfloat16', 'model.features': (8, 16)}
  )
  task = make_task(config)
  assert task.model.dtype == jnp.bfloat16
  state = task.init(jax.random.PRNGKey(0), (16, 16, 1))
  images = jax.random.uniform(jax.random.PRNGKey(1), (40, 16, 16, 1))

  @jax.jit
  def run(state):
    def step(state, i):
      batch = jax.lax.dynamic_slice_in_dim(images, (i % 4) * 10, 10)
      state, metrics = task.train_step(state, batch, jax.random.PRNGKey(i))
      return state, metrics['loss']

    return jax.lax.scan(step, state, jnp.arange(300))

  state, losses = run(state)
  assert bool(jnp.all(jnp.isfinite(losses))), losses
  idx = jnp.arange(40)
  variables = task.fit_scorer(state.variables, images, idx, idx < 35)
  scores, maps = task.score(variables, images)
  assert scores.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(scores)))
  assert bool(jnp.all(jnp.isfinite(maps)))


def test_fit_scorer_fits_the_mixture_on_the_masked_training_set():
  task = make_task(make_config('configs/headct/dagmm.py:tiny'))
  state = task.init(jax.random.PRNGKey(0), (32, 32, 1))
  images = jax.random.uniform(jax.random.PRNGKey(1), (25, 32, 32, 1))
  idx = jnp.arange(25)[::-1]
  mask = jnp.arange(25) < 17  # 17 is not a multiple of fit_batch: padding inside
  fitted = task.fit_scorer(state.variables, images, idx, mask)
  net = {'params': state.params, 'batch_stats': {}}
  net['batch_stats'] = {k: v for k, v in state.batch_stats.items() if k != 'mixture'}
  out = task.model.apply(net, images[idx[:17]], train=False)
  phi, mu, sigma = dagmm_lib.fit_mixture(out['z'], out['gamma'])
  m = fitted['batch_stats']['mixture']
  np.testing.assert_allclose(m['phi'], phi, rtol=1e-4)
  np.testing.assert_allclose(m['mu'], mu, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(m['sigma'], sigma, rtol=1e-3, atol=1e-7)
  # Scoring reads the stored mixture.
  e, _ = task.score(fitted, images[idx[:17]])
  np.testing.assert_allclose(e, dagmm_lib.energy(out['z'], phi, mu, sigma), rtol=1e-4, atol=1e-4)


def _check_run(workdir, summary):
  assert summary['model'] == 'dagmm' and summary['n_iterations'] == 2
  text = (workdir / 'summary.md').read_text()
  assert '| DAGMM (uadjax) |' in text
  best = checkpoint.restore(str(workdir / 'iter_00' / 'checkpoints' / 'best'))
  mixture = best['batch_stats']['mixture']
  # The selected variables carry a fitted mixture, not the placeholder (phi = 1/K, sigma = I).
  assert not np.allclose(np.asarray(mixture['sigma'][0]), np.eye(5))
  assert np.isclose(float(np.sum(mixture['phi'])), 1.0, atol=1e-4)


def test_tiny_protocol_end_to_end_sequential(tmp_path):
  workdir = tmp_path / 'dagmm'
  _check_run(
    workdir,
    cv.run(
      make_config('configs/headct/dagmm.py:tiny,phantoms', **{'cv.parallel': False}), str(workdir)
    ),
  )


def test_tiny_protocol_end_to_end_fold_parallel(tmp_path):
  workdir = tmp_path / 'dagmm_parallel'
  _check_run(
    workdir,
    cv.run(
      make_config('configs/headct/dagmm.py:tiny,phantoms', **{'cv.parallel': True}), str(workdir)
    ),
  )
