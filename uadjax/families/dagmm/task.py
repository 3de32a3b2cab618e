"""DAGMM: the pure train step, the mixture fitted on the training set, and the energy score.

Loss (Zong et al.): MSE(x, x') + lambda_E * mean energy + lambda_cov * P(Sigma), with the mixture
of each training batch fitted from that batch's memberships (as in the paper). For scoring, the
mixture is refitted on the whole training set of the iteration (`fit_scorer`, which the engine
calls before every validation) instead of the study's last batch; it is stored in the variables
as `batch_stats['mixture'] = {'phi', 'mu', 'sigma'}`, so the best checkpoint carries it and
`score` needs nothing else. All of it in float32 (see uadjax/families/dagmm/model.py).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from uadjax.families.dagmm import model as dagmm_lib
from uadjax.nn.scores import residual_map
from uadjax.train.state import TrainState, create_train_state
from uadjax.train.task import Batch, Task

MIXTURE = 'mixture'


def _split(variables):
  """(the network's variables, the mixture) from variables that carry one."""
  stats = dict(variables['batch_stats'])
  mixture = stats.pop(MIXTURE)
  return {'params': variables['params'], 'batch_stats': stats}, mixture


def _join(variables, mixture):
  return {
    'params': variables['params'],
    'batch_stats': {**variables['batch_stats'], MIXTURE: mixture},
  }


@dataclasses.dataclass(frozen=True)
class DAGMMTask(Task):
  """Training and scoring of a `DAGMM` module.

  Attributes:
    model: the DAGMM module.
    tx: the optax optimiser (study: clipped at global norm 5, `optimizer.clip_norm`).
    lambda_energy: weight of the mean sample energy (study: 0.1).
    lambda_cov: weight of the covariance penalty (study: 0.005).
    jitter: added to the covariances' diagonals before Cholesky and in the penalty.
    pretrain_steps: optimiser steps that train the autoencoder on the reconstruction loss alone
      before the energy and penalty terms join (0 = the paper's joint training).
    fit_batch: images per forward pass when fitting the mixture on the training set.
  """

  # Its programs trained 1-7 % slower at the compiler's -O1 (device epochs 319-327 against
  # 330-331 img/s, fold-parallel 265-273 against 276-285; uadjax.run.compiler): -O3 it stays.
  cpu_optimization_level: ClassVar[int] = 3

  model: nn.Module
  tx: optax.GradientTransformation
  lambda_energy: float = 0.1
  lambda_cov: float = 0.005
  jitter: float = 1e-6
  pretrain_steps: int = 0
  fit_batch: int = 30

  reconstructs: ClassVar[bool] = True

  def init(self, key, image_shape) -> TrainState:
    """A fresh state for images of shape (h, w, c); its variables carry a placeholder mixture."""
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    variables = self.model.init({'params': key}, dummy, train=False)
    mixture = dagmm_lib.empty_mixture(self.model.n_components, self.model.z_dim)
    return create_train_state(_join(dict(variables), mixture), self.tx)

  def losses(self, images, outputs):
    """(reconstruction, mean energy, covariance penalty) of a batch, each float32, with the
    mixture fitted on the batch's own memberships."""
    recon = jnp.mean(residual_map(images, outputs['reconstruction']))
    phi, mu, sigma = dagmm_lib.fit_mixture(outputs['z'], outputs['gamma'])
    energy = jnp.mean(dagmm_lib.energy(outputs['z'], phi, mu, sigma, self.jitter))
    penalty = dagmm_lib.covariance_penalty(sigma, self.jitter)
    return recon, energy, penalty

  def train_step(self, state: TrainState, batch: Batch, key):
    """One optimiser update on a batch; pure (jit, vmap and scan it from outside)."""
    images = batch.images
    net, mixture = _split(state.variables)
    # During pre-training the mixture terms are weighted 0 (not skipped: one compiled step).
    on = (state.step >= self.pretrain_steps).astype(jnp.float32)

    def objective(params):
      outputs, updates = self.model.apply(
        {'params': params, 'batch_stats': net['batch_stats']},
        images,
        train=True,
        rngs={'dropout': key},
        mutable=['batch_stats'],
      )
      recon, energy, penalty = self.losses(images, outputs)
      loss = recon + on * (self.lambda_energy * energy + self.lambda_cov * penalty)
      return loss, updates

    (loss, updates), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    batch_stats = {**updates.get('batch_stats', net['batch_stats']), MIXTURE: mixture}
    new_state = state.apply_gradients(self.tx, grads, batch_stats)
    return new_state, {'loss': loss}

  def fit_scorer(self, variables, images, train_idx, train_mask):
    """`variables` with the mixture refitted on `images[train_idx]` where `train_mask` (the
    iteration's whole training set, evaluation mode, in batches of `fit_batch`). Pure."""
    net, _ = _split(variables)
    n = train_idx.shape[0]
    padded = -(-n // self.fit_batch) * self.fit_batch
    idx = jnp.pad(train_idx, (0, padded - n), mode='edge')
    mask = jnp.pad(train_mask, (0, padded - n))

    def forward(chunk):
      out = self.model.apply(net, images[chunk], train=False)
      return out['z'], out['gamma']

    z, gamma = jax.lax.map(forward, idx.reshape(-1, self.fit_batch))
    z = z.reshape(padded, -1)
    gamma = gamma.reshape(padded, -1)
    phi, mu, sigma = dagmm_lib.fit_mixture(z, gamma, weights=mask)
    return _join(net, {'phi': phi, 'mu': mu, 'sigma': sigma})

  def score(self, variables, images):
    """Energies (n,) under the stored mixture, and the reconstruction residual maps (n, h, w)
    (DAGMM scores whole images; the map is only for figures), float32, evaluation mode."""
    net, mixture = _split(variables)
    outputs = self.model.apply(net, images, train=False)
    energies = dagmm_lib.energy(
      outputs['z'], mixture['phi'], mixture['mu'], mixture['sigma'], self.jitter
    )
    return energies, residual_map(images, outputs['reconstruction'])

  def reconstruct(self, variables, images):
    """The reconstructions, float32 (for figures)."""
    net, _ = _split(variables)
    return self.model.apply(net, images, train=False)['reconstruction']
