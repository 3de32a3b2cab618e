"""f-AnoGAN: networks, WGAN-GP losses and penalty, the two tasks, the selection distance, and
both phases end to end on the tiny phantoms config (with a resume of the encoder phase)."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers import make_config
from uadjax.evaluation.swd import sliced_wasserstein
from uadjax.models.fanogan import FAnoGAN
from uadjax.train import fanogan as fg

SIZE, LATENT = 16, 8


def _model(arch='dcgan'):
  return FAnoGAN(arch=arch, latent_dim=LATENT, dim=4, image_size=SIZE)


def _images(n=6, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, SIZE, SIZE, 1))


@pytest.mark.parametrize('arch', ['resnet', 'dcgan'])
def test_shapes_and_ranges(arch):
  model = _model(arch)
  x = _images() * 2 - 1
  variables = model.init(jax.random.PRNGKey(0), x)
  assert set(variables['params']) == {'generator', 'critic', 'encoder'}
  # No BatchNorm in the critic (nor in the encoder, its trunk's twin): per-sample penalty.
  assert set(variables['batch_stats']) == {'generator'}
  z = model.apply(variables, x, method='encode')
  assert z.shape == (6, LATENT) and jnp.all(jnp.abs(z) < 1)
  g = model.apply(variables, z, method='generate')
  assert g.shape == x.shape and g.dtype == jnp.float32 and jnp.all(jnp.abs(g) <= 1)
  scores, features = model.apply(variables, x, method='discriminate')
  assert scores.shape == (6,) and features.shape[0] == 6


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
  state = task.init(jax.random.PRNGKey(0), (SIZE, SIZE, 1))
  images = _images(8)
  step = jax.jit(task.train_step)
  key = jax.random.PRNGKey(5)
  fake = task.generate(state.variables, task.latent(key, 8))

  def gap(s):
    d = lambda x: task.discriminate(s.variables, x)[0]
    return float(jnp.mean(d(fg.to_gan(images))) - jnp.mean(d(fake)))

  g0 = state.params['generator']
  new, metrics = step(state, images, key)
  assert gap(new) > gap(state) and np.isfinite(float(metrics['loss']))
  # Steps 1 and 2 leave the generator alone; step 3 (n_critic) updates it.
  same = lambda a, b: all(jax.tree.leaves(jax.tree.map(jnp.array_equal, a, b)))
  assert same(new.params['generator'], g0)
  new, _ = step(new, images, jax.random.PRNGKey(6))
  assert same(new.params['generator'], g0)
  new, _ = step(new, images, jax.random.PRNGKey(7))
  assert not same(new.params['generator'], g0)


def _encoder(variant):
  return fg.EncoderTask(model=_model(), tx=optax.adam(1e-2), variant=variant)


@pytest.mark.parametrize('variant', ['izi', 'izi_f', 'ziz'])
def test_encoder_training_leaves_generator_and_critic_bit_identical(variant):
  task = _encoder(variant)
  state = task.init(jax.random.PRNGKey(0), (SIZE, SIZE, 1))
  before = jax.tree.map(np.asarray, (state.params['generator'], state.params['critic']))
  stats = jax.tree.map(np.asarray, state.batch_stats)
  step = jax.jit(task.train_step)
  for i in range(3):
    state, _ = step(state, _images(6), jax.random.PRNGKey(i))
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
  state = task.init(jax.random.PRNGKey(0), (SIZE, SIZE, 1))
  z = task.latent(jax.random.PRNGKey(99), 32)

  def error(s):
    return float(jnp.mean(jnp.square(z - task.encode(s.variables, task.generate(s.variables, z)))))

  start = error(state)
  step = jax.jit(task.train_step)
  for i in range(30):
    state, _ = step(state, _images(16), jax.random.PRNGKey(i))
  assert error(state) < 0.9 * start


def test_sliced_wasserstein_zero_for_identical_sets_and_grows_with_a_shift():
  a = _images(16, 0) * 2 - 1
  key = jax.random.PRNGKey(0)
  swd = lambda b: float(sliced_wasserstein(a, b, key, levels=2, patch=5))
  assert swd(a) == 0.0
  small, large = swd(a + 0.1), swd(a + 0.5)
  assert 0 < small < large
  assert swd(_images(16, 1) * 2 - 1) > 0


# -- both phases end to end -----------------------------------------------------------------------


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  from uadjax import cv

  workdir = tmp_path_factory.mktemp('fanogan') / 'run'
  cv.run(make_config('configs/headct/fanogan.py:tiny,phantoms'), str(workdir))
  return workdir


def test_two_phases_write_gan_and_encoder_results(tiny_run):
  workdir = tiny_run
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['model'] == 'fanogan' and summary['n_iterations'] == 2
  for i in (0, 1):
    gan = workdir / 'gan' / f'iter_{i:02d}'
    assert (gan / 'checkpoints' / 'best').is_dir() and (gan / 'checkpoints' / 'latest').is_dir()
    info = json.loads((gan / 'gan.json').read_text())
    assert info['selected_epoch'] in info['select_epochs'] and len(info['swd']) == 2
    assert (gan / 'samples' / 'selected.png').exists()
    m = json.loads((workdir / f'iter_{i:02d}' / 'metrics.json').read_text())
    parts = m['test_score_parts']
    assert len(parts['image']) == len(parts['feature']) == m['n_test']
    np.testing.assert_allclose(
      np.asarray(parts['image']) + np.asarray(parts['feature']), m['test_scores'], rtol=1e-4
    )


def test_rerun_resumes_the_encoder_phase(tiny_run, tmp_path):
  from uadjax import cv

  resumed = tmp_path / 'resumed'
  shutil.copytree(tiny_run, resumed)
  it1 = resumed / 'iter_01'
  os.remove(it1 / 'metrics.json')
  shutil.rmtree(it1 / 'checkpoints' / 'best')
  shutil.rmtree(it1 / 'checkpoints' / 'latest' / '4')
  os.remove(resumed / 'summary.json')
  gan_before = (resumed / 'gan' / 'iter_01' / 'gan.json').read_text()
  cv.run(make_config('configs/headct/fanogan.py:tiny,phantoms'), str(resumed))
  before = json.loads((tiny_run / 'iter_01' / 'metrics.json').read_text())
  after = json.loads((resumed / 'iter_01' / 'metrics.json').read_text())
  assert after['history']['epoch'] == [1, 2, 3, 4]
  np.testing.assert_allclose(after['test_scores'], before['test_scores'], rtol=1e-4, atol=1e-6)
  assert (resumed / 'gan' / 'iter_01' / 'gan.json').read_text() == gan_before
