"""f-AnoGAN training: the WGAN-GP losses and penalty, the critic/generator and encoder tasks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from uadjax.families.fanogan import task as fg
from uadjax.families.fanogan.model import FAnoGAN
from uadjax.nn import masks
from uadjax.train.task import Batch

SIZE, LATENT = 16, 8


def _model(arch='dcgan'):
  return FAnoGAN(arch=arch, latent_dim=LATENT, dim=4, image_size=SIZE)


def _images(n=6, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, SIZE, SIZE, 1))


def test_gradient_penalty_of_a_linear_critic():
  w = jax.random.normal(jax.random.PRNGKey(1), (SIZE, SIZE, 1))
  critic = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
  real, fake = _images(4, 1), _images(4, 2)
  gp = fg.gradient_penalty(critic, real, fake, jax.random.PRNGKey(3), weight=10.0)
  expected = 10.0 * (float(jnp.linalg.norm(w)) - 1.0) ** 2
  np.testing.assert_allclose(float(gp), expected, rtol=1e-5)


def test_wgan_loss_signs():
  low, high = jnp.zeros(4), jnp.ones(4)
  # The critic's loss falls as it scores real images higher and fakes lower.
  assert fg.critic_loss(high, low) < fg.critic_loss(low, low) < fg.critic_loss(low, high)
  # The generator's loss falls as the critic scores its images higher.
  assert fg.generator_loss(high) < fg.generator_loss(low)


def _wgan(n_critic=5):
  return fg.WGANTask(model=_model(), tx=optax.adam(1e-3, b1=0.0, b2=0.9), n_critic=n_critic)


def test_critic_step_raises_the_wasserstein_estimate_and_generator_every_n_critic():
  task = _wgan(n_critic=3)
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (SIZE, SIZE, 1))
  images = _images(8)
  step = jax.jit(task.train_step)
  key = jax.random.PRNGKey(5)
  fake = task.generate(state.variables, task.latent(key, 8))

  def gap(s):
    d = lambda x: task.discriminate(s.variables, x)[0]
    return float(jnp.mean(d(fg.to_gan(images))) - jnp.mean(d(fake)))

  g0 = state.params['generator']
  new, metrics = step(state, Batch.of(images), key)
  assert gap(new) > gap(state) and np.isfinite(float(metrics['loss']))
  # Steps 1 and 2 leave the generator alone; step 3 (n_critic) updates it.
  same = lambda a, b: all(jax.tree.leaves(jax.tree.map(jnp.array_equal, a, b)))
  assert same(new.params['generator'], g0)
  new, _ = step(new, Batch.of(images), jax.random.PRNGKey(6))
  assert same(new.params['generator'], g0)
  new, _ = step(new, Batch.of(images), jax.random.PRNGKey(7))
  assert not same(new.params['generator'], g0)


def _encoder(variant):
  return fg.EncoderTask(model=_model(), tx=optax.adam(1e-2), variant=variant)


@pytest.mark.parametrize('variant', ['izi', 'izi_f', 'ziz'])
def test_encoder_training_leaves_generator_and_critic_bit_identical(variant):
  task = _encoder(variant)
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (SIZE, SIZE, 1))
  before = jax.tree.map(np.asarray, (state.params['generator'], state.params['critic']))
  stats = jax.tree.map(np.asarray, state.batch_stats)
  step = jax.jit(task.train_step)
  for i in range(3):
    state, _ = step(state, Batch.of(_images(6)), jax.random.PRNGKey(i))
  after = (state.params['generator'], state.params['critic'])
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
    assert np.array_equal(a, np.asarray(b))
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(state.batch_stats), strict=True):
    assert np.array_equal(a, np.asarray(b))
  scores, maps = task.score(state.variables, _images(6))
  parts = task.score_parts(state.variables, _images(6))
  assert scores.shape == (6,) and maps.shape == (6, SIZE, SIZE)
  np.testing.assert_allclose(scores, parts['image'] + task.kappa * parts['feature'], rtol=1e-6)


def test_ziz_lowers_latent_error_on_a_fixed_set():
  task = _encoder('ziz')
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (SIZE, SIZE, 1))
  z = task.latent(jax.random.PRNGKey(99), 32)

  def error(s):
    return float(jnp.mean(jnp.square(z - task.encode(s.variables, task.generate(s.variables, z)))))

  start = error(state)
  step = jax.jit(task.train_step)
  for i in range(30):
    state, _ = step(state, Batch.of(_images(16)), jax.random.PRNGKey(i))
  assert error(state) < 0.9 * start


def test_encoder_score_switches_change_the_image_term_only():
  """The default switches give the study's score; head + top-k scores the [0, 1] residual
  inside the head, times 4 (the study's [-1, 1] units), plus the unchanged feature term."""
  study = _encoder('izi_f')
  state = jax.jit(study.init, static_argnums=1)(jax.random.PRNGKey(0), (SIZE, SIZE, 1))
  images = _images(4)
  parts = study.parts(state.variables, images)
  s_study, _ = study.score(state.variables, images)
  np.testing.assert_allclose(s_study, parts['image'] + parts['feature'], rtol=1e-6)
  # An explicit 'mean over the whole image' through the switched path is the study's score.
  whole = dataclasses.replace(study, reduction='topk', topk=1.0)
  np.testing.assert_allclose(whole.score(state.variables, images)[0], s_study, rtol=1e-3)

  switched = dataclasses.replace(study, mask='head', reduction='topk', topk=0.25)
  s, maps = switched.score(state.variables, images)
  recon = (np.asarray(parts['reconstruction']) + 1.0) / 2.0
  residual = np.mean(np.square(np.asarray(images) - recon), axis=-1)
  head = np.asarray(masks.region_mask(images, 'head'))
  for i in range(4):
    assert head[i].any()
    inside = np.sort(residual[i][head[i]])[::-1]
    k = max(1, int(np.ceil(0.25 * inside.size)))
    expected = 4.0 * inside[:k].mean() + float(parts['feature'][i])
    np.testing.assert_allclose(float(s[i]), expected, rtol=1e-4)
  assert np.all(np.asarray(maps)[~head] == 0.0)
  with pytest.raises(ValueError, match='task.mask'):
    dataclasses.replace(study, mask='skull')
