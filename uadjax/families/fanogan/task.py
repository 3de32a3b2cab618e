"""f-AnoGAN's two training phases as engine tasks (pure steps, run under the engine's scans).

  WGANTask: phase 1, the WGAN-GP. Each `train_step` is one critic update on the batch; every
    `n_critic`-th step also updates the generator (a `lax.cond` on the step counter), so n_critic
    critic steps per generator step run inside the engine's compiled epoch. (The study's code
    updated the generator once every 2 epochs: not copied.) Selection: the sliced Wasserstein
    distance between generated and real training images (`selection_metric`, lower is better).
  EncoderTask: phase 2, G and D frozen; 'izi', 'izi_f' or 'ziz'. Score (every variant, as the
    study): MSE(x, G(E(x))) + kappa * MSE(f(x), f(G(E(x)))); map: the per-pixel squared residual.

Both keep the whole FAnoGAN parameter tree in `TrainState.params` ({'generator', 'critic',
'encoder'}) and update only their part; `opt_state` holds the optimiser state of the updated
parts only. The data's images are in [0, 1]; the networks see 2x - 1 in [-1, 1].
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from uadjax.evaluation.swd import sliced_wasserstein
from uadjax.nn import scores as scores_lib
from uadjax.train.state import TrainState
from uadjax.train.task import Batch, Task

VARIANTS = ('izi', 'izi_f', 'ziz')


def to_gan(images):
  """[0, 1] -> [-1, 1], float32."""
  return images.astype(jnp.float32) * 2.0 - 1.0


def critic_loss(d_real, d_fake):
  """WGAN critic loss E[D(fake)] - E[D(real)] (minimised: the critic raises D(real) - D(fake))."""
  return jnp.mean(d_fake) - jnp.mean(d_real)


def generator_loss(d_fake):
  """WGAN generator loss -E[D(G(z))]."""
  return -jnp.mean(d_fake)


def gradient_penalty(critic, real, fake, key, weight: float = 10.0):
  """weight * mean_i (||grad D(x_i)||_2 - 1)^2 at x_i = e_i real_i + (1 - e_i) fake_i, e_i ~ U(0,1).

  `critic(x) -> (n,)` scores each sample on its own (no BatchNorm), so the gradient of the sum of
  the scores holds each sample's own gradient. The norms run in float32: in bfloat16 the squared
  sum of 64x64 gradients loses the digits that (norm - 1) keeps.
  """
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
  x_hat = eps * real.astype(jnp.float32) + (1.0 - eps) * fake.astype(jnp.float32)
  grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat).astype(jnp.float32)
  # The tiny constant keeps the norm's gradient finite at a zero gradient.
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))) + 1e-12)
  return weight * jnp.mean(jnp.square(norms - 1.0))


@dataclasses.dataclass(frozen=True)
class _Parts:
  """Calls of the FAnoGAN module's parts with a given variables dict."""

  model: nn.Module

  def generate(self, variables, z, *, train: bool = False):
    """G(z); with train=True also returns the updated batch_stats."""
    if train:
      x, updates = self.model.apply(
        variables, z, train=True, method='generate', mutable=['batch_stats']
      )
      return x, updates['batch_stats']
    return self.model.apply(variables, z, method='generate')

  def discriminate(self, variables, x):
    """(scores, features) of images in [-1, 1]."""
    return self.model.apply(variables, x, method='discriminate')

  def encode(self, variables, x):
    """E(x) of images in [-1, 1]."""
    return self.model.apply(variables, x, method='encode')

  def latent(self, key, n: int):
    """n codes z ~ N(0, I) (as the study samples them)."""
    return jax.random.normal(key, (n, self.model.latent_dim), jnp.float32)


def _init_state(model, key, image_shape, opt_state_of) -> TrainState:
  variables = model.init({'params': key}, jnp.zeros((1, *image_shape), jnp.float32))
  params = variables['params']
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables.get('batch_stats', {}),
    opt_state=opt_state_of(params),
  )


@dataclasses.dataclass(frozen=True)
class WGANTask(_Parts, Task):
  """Phase 1: WGAN-GP training of the generator and the critic.

  Attributes:
    model: a `FAnoGAN` module.
    tx: the optimiser of both networks (each has its own state; study: Adam 1e-4, (0, 0.9)).
    n_critic: critic steps per generator step (study: 5).
    gp_weight: lambda of the gradient penalty (study: 10).
    n_select: generated and real images compared at each selection.
    swd_levels: pyramid levels of the selection distance (the smallest must hold a patch).
    swd_patch: side of its patches.
  """

  tx: optax.GradientTransformation = None
  n_critic: int = 5
  gp_weight: float = 10.0
  n_select: int = 64
  swd_levels: int = 3
  swd_patch: int = 7

  anomaly_maps: ClassVar[bool] = False  # the critic's score has no map

  def init(self, key, image_shape) -> TrainState:
    """A fresh state for images of shape (h, w, c); optimiser states for G and D."""
    return _init_state(
      self.model,
      key,
      image_shape,
      lambda p: {'critic': self.tx.init(p['critic']), 'generator': self.tx.init(p['generator'])},
    )

  def train_step(self, state: TrainState, batch: Batch, key):
    """One critic update; a generator update too when the new step count is a multiple of
    n_critic. Pure. Metrics: 'loss' (critic loss incl. penalty), 'wasserstein', 'penalty'."""
    real = to_gan(batch.images)
    z_key, gp_key, g_key = jax.random.split(key, 3)
    params = state.params
    variables = {'params': params, 'batch_stats': state.batch_stats}
    fake, batch_stats = self.generate(variables, self.latent(z_key, real.shape[0]), train=True)
    fake = jax.lax.stop_gradient(fake)

    def objective(critic_params):
      v = {'params': {**params, 'critic': critic_params}}
      d = lambda x: self.discriminate(v, x)[0]
      wasserstein = critic_loss(d(real), d(fake))
      penalty = gradient_penalty(d, real, fake, gp_key, self.gp_weight)
      return wasserstein + penalty, (wasserstein, penalty)

    (loss, (wasserstein, penalty)), grads = jax.value_and_grad(objective, has_aux=True)(
      params['critic']
    )
    updates, critic_opt = self.tx.update(grads, state.opt_state['critic'], params['critic'])
    state = state.replace(
      step=state.step + 1,
      params={**params, 'critic': optax.apply_updates(params['critic'], updates)},
      batch_stats=batch_stats,
      opt_state={**state.opt_state, 'critic': critic_opt},
    )
    state = jax.lax.cond(
      state.step % self.n_critic == 0,
      lambda s: self.generator_step(s, g_key, real.shape[0]),
      lambda s: s,
      state,
    )
    return state, {'loss': loss, 'wasserstein': -wasserstein, 'penalty': penalty}

  def generator_step(self, state: TrainState, key, n: int) -> TrainState:
    """One generator update against the current critic on n fresh codes."""
    z = self.latent(key, n)

    def objective(generator_params):
      v = {
        'params': {**state.params, 'generator': generator_params},
        'batch_stats': state.batch_stats,
      }
      fake, batch_stats = self.generate(v, z, train=True)
      return generator_loss(self.discriminate(v, fake)[0]), batch_stats

    (_, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(state.params['generator'])
    g = state.params['generator']
    updates, g_opt = self.tx.update(grads, state.opt_state['generator'], g)
    return state.replace(
      params={**state.params, 'generator': optax.apply_updates(g, updates)},
      batch_stats=batch_stats,
      opt_state={**state.opt_state, 'generator': g_opt},
    )

  def score(self, variables, images):
    """The critic's anomaly score -D(x) (n,) and empty maps (n, h, w): a by-product curve for
    the GAN phase's validation AUC (the GAN is selected by `selection_metric`)."""
    scores, _ = self.discriminate(variables, to_gan(images))
    return -scores, jnp.zeros(images.shape[:3], jnp.float32)

  def selection_metric(self, variables, images, fold, key):
    """SWD x 1e3 between n_select generated images and n_select training images (drawn with
    replacement among the fold's unmasked training indices). Lower is better."""
    real_key, z_key, swd_key = jax.random.split(key, 3)
    p = fold.train_mask.astype(jnp.float32)
    idx = jax.random.choice(real_key, fold.train_idx, (self.n_select,), p=p / jnp.sum(p))
    fake = self.generate(variables, self.latent(z_key, self.n_select))
    return sliced_wasserstein(
      to_gan(images[idx]), fake, swd_key, levels=self.swd_levels, patch=self.swd_patch
    )

  def samples(self, variables, key, n: int):
    """n generated images in [0, 1] (evaluation mode), for sample grids."""
    return (self.generate(variables, self.latent(key, n)) + 1.0) / 2.0


@dataclasses.dataclass(frozen=True)
class EncoderTask(scores_lib.ScoreSwitches, _Parts, Task):
  """Phase 2: the encoder, with the generator and the critic frozen.

  The training loss is always the study's. The score is image + kappa * feature residual; the
  score switches (`scores_lib.ScoreSwitches`: a head or brain mask, top-k, blur, SSIM) change
  its image term only, computed on [0, 1] images and multiplied by 4, the [-1, 1] units of the
  study's term, so that the switches at their defaults give the study's score.

  Attributes:
    model: a `FAnoGAN` module.
    tx: the encoder's optimiser.
    variant: 'izi' (||x - G(E(x))||^2), 'izi_f' (izi + kappa ||f(x) - f(G(E(x)))||^2) or 'ziz'
      (||z - E(G(z))||^2 on sampled z).
    kappa: the weight of the feature residual, in izi_f's loss and in every variant's score.
  """

  tx: optax.GradientTransformation = None
  variant: str = 'izi_f'
  kappa: float = 1.0

  reconstructs: ClassVar[bool] = True
  composite_score: ClassVar[bool] = True

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f'task.variant={self.variant!r}; expected one of {VARIANTS}.')
    self.check_score_switches()

  def init(self, key, image_shape) -> TrainState:
    """A fresh state (all three networks initialised; the driver puts the GAN's in)."""
    return _init_state(self.model, key, image_shape, lambda p: self.tx.init(p['encoder']))

  def parts(self, variables, images) -> dict:
    """{'image': MSE(x, G(E(x))) (n,), 'feature': MSE(f(x), f(G(E(x)))) (n,), 'map': per-pixel
    squared residual (n, h, w), 'reconstruction': G(E(x)) in [-1, 1]}, float32."""
    x = to_gan(images)
    reconstruction = self.generate(variables, self.encode(variables, x))
    _, f_x = self.discriminate(variables, x)
    _, f_r = self.discriminate(variables, reconstruction)
    residual = jnp.mean(jnp.square(x - reconstruction), axis=-1)
    return {
      'image': jnp.mean(residual, axis=(1, 2)),
      'feature': jnp.mean(jnp.square(f_x - f_r), axis=-1),
      'map': residual,
      'reconstruction': reconstruction,
    }

  def train_step(self, state: TrainState, batch: Batch, key):
    """One encoder update; G, D and batch_stats pass through untouched. Pure."""
    images = batch.images

    def objective(encoder_params):
      v = {'params': {**state.params, 'encoder': encoder_params}, 'batch_stats': state.batch_stats}
      if self.variant == 'ziz':
        z = self.latent(key, images.shape[0])
        return jnp.mean(jnp.square(z - self.encode(v, self.generate(v, z))))
      p = self.parts(v, images)
      loss = jnp.mean(p['image'])
      if self.variant == 'izi_f':
        loss = loss + self.kappa * jnp.mean(p['feature'])
      return loss

    loss, grads = jax.value_and_grad(objective)(state.params['encoder'])
    e = state.params['encoder']
    updates, opt_state = self.tx.update(grads, state.opt_state, e)
    new_state = state.replace(
      step=state.step + 1,
      params={**state.params, 'encoder': optax.apply_updates(e, updates)},
      opt_state=opt_state,
    )
    return new_state, {'loss': loss}

  def score_terms(self, variables, images) -> dict:
    """The score's terms: {'image': (n,), 'feature': (n,) unweighted, 'map': (n, h, w)}; the
    image term and the map under the score switches (the study's when none is set)."""
    p = self.parts(variables, images)
    image, maps = p['image'], p['map']
    if not self.study_score:
      image, maps = self.switched_scores(images, (p['reconstruction'] + 1.0) / 2.0, variables)
      # A residual of [0, 1] images is a quarter of the [-1, 1] one: back to the study's units.
      image, maps = 4.0 * image, 4.0 * maps
    return {'image': image, 'feature': p['feature'], 'map': maps}

  def score(self, variables, images):
    """The score image + kappa * feature residual (n,) and the residual map (n, h, w)."""
    t = self.score_terms(variables, images)
    return t['image'] + self.kappa * t['feature'], t['map']

  def score_parts(self, variables, images) -> dict:
    """The score's two terms per image: {'image': (n,), 'feature': (n,)} (feature unweighted)."""
    t = self.score_terms(variables, images)
    return {'image': t['image'], 'feature': t['feature']}

  def reconstruct(self, variables, images):
    """G(E(x)) in [0, 1], float32 (for figures)."""
    return (self.parts(variables, images)['reconstruction'] + 1.0) / 2.0
