"""f-AnoGAN's GAN phase (WGAN-GP), declared in `uadjax.families` as the phase before the
scored encoder phase.

The run's config describes the encoder phase at its top level (task.variant, optimizer,
train.epochs, cv.val_every: the study's selection by validation AUC, the F1 threshold,
metrics.json), so its results have the layout and the reports of every other model. `config.gan`
describes the GAN phase; `gan_config` turns it into an ordinary protocol config, trained by the
same engine with `WGANTask` and selected by the task's own metric (the sliced Wasserstein
distance between generated and training images, `uadjax.evaluation.swd`). Its folder is
`gan/` (the layout: `uadjax.run.layout`).
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from uadjax import io
from uadjax.run import checkpoint, records
from uadjax.run.compiler import SCORING
from uadjax.run.layout import RunDir

# Folded into an iteration's key for the fixed codes of the sample grids.
_SAMPLES_KEY = 2**31 - 2


def gan_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The GAN phase as an ordinary protocol config: config.gan's values at the top level (the
  `gan` section stays: its `samples` is the grids' size)."""
  c = ml_collections.ConfigDict(config.to_dict())
  g = c.gan
  c.task = g.task
  c.optimizer = g.optimizer
  c.train.epochs = g.epochs
  c.cv.val_every = g.select_every
  c.cv.epochs_per_call = g.epochs_per_call
  c.cv.checkpoint_every = g.checkpoint_every
  return c


def write_grid(path: str, images, columns: int | None = None) -> str:
  """Writes images (n, h, w, c) in [0, 1] as one PNG grid: gray for one channel, RGB for three,
  red and green (an empty blue) for two (the fundus f-AnoGAN's channels)."""
  x = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = x.shape
  if c == 2:
    x = np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
  x = x[..., :3] if c >= 2 else x
  channels = x.shape[-1]
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = -(-n // columns)
  grid = np.ones((rows * (h + 2) + 2, columns * (w + 2) + 2, channels), np.float32)  # gutters
  for k in range(n):
    r, q = divmod(k, columns)
    grid[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + q * (w + 2) : 2 + q * (w + 2) + w] = x[k]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = (grid * 255).round().astype(np.uint8)
  Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(path)
  return path


def samples(protocol, iteration: int, variables, n: int) -> np.ndarray:
  """n generated images for the iteration's fixed codes (the same at every epoch), from the GAN
  phase's protocol (`uadjax.protocol.Protocol`)."""
  fn = protocol.engine.cached(
    'samples', lambda: protocol.engine.jit(protocol.task.samples, SCORING, static_argnums=2)
  )
  key = jax.random.fold_in(protocol.iteration_key(iteration), _SAMPLES_KEY)
  return np.asarray(fn(jax.device_put(variables), key, n))


def write_samples(protocol, run_dir: RunDir, iteration: int, carry) -> None:
  """The current generator's sample grid at a 'latest' checkpoint (samples/epoch_NNNNN.png)."""
  epoch = int(carry.epoch)
  path = os.path.join(run_dir.samples(iteration), f'epoch_{epoch:05d}.png')
  write_grid(path, samples(protocol, iteration, carry.state.variables, protocol.config.gan.samples))


def hand_over(run_dir: RunDir, iteration: int, state):
  """The encoder's fresh state with the iteration's selected (frozen) generator and critic,
  read from the GAN phase's folder."""
  best = checkpoint.restore(run_dir.best(iteration))
  params = {
    **state.params,
    'generator': best['params']['generator'],
    'critic': best['params']['critic'],
  }
  return state.replace(params=params, batch_stats=best['batch_stats'])


def finish(protocol, run_dir: RunDir, iteration: int, carry, history) -> dict:
  """Saves the selected GAN, its sample grid, and gan.json (last: it marks the phase done)."""
  n_samples = protocol.config.gan.samples
  checkpoint.save(
    run_dir.best(iteration),
    {**carry.best, 'epoch': carry.best_epoch, 'metric': carry.best_metric},
  )
  info = records.GANRecord(
    iteration=iteration,
    selection='sliced Wasserstein distance x 1e3, generated vs. training images (lower)',
    selected_epoch=int(carry.best_epoch),
    selected_swd=float(-carry.best_metric),
    select_epochs=history['val_epoch'],
    swd=history.get('val_metric', []),
    critic_val_auc=history['val_auc'],
    epoch=history['epoch'],
    critic_loss=history['train_loss'],
  ).to_json()
  if jax.process_index() == 0:
    write_grid(
      os.path.join(run_dir.samples(iteration), 'selected.png'),
      samples(protocol, iteration, carry.best, n_samples),
    )
    io.write_json(run_dir.record(iteration, 'gan.json'), info)
  logging.info(
    'Iteration %d: GAN selected at epoch %d (SWD %.2f).',
    iteration,
    info['selected_epoch'],
    info['selected_swd'],
  )
  return info
