"""f-AnoGAN under the 2x5 protocol: a WGAN-GP phase, then the encoder phase, in one command.

`uadjax.cv.run` hands a config with a `gan` section here. The config's top level describes the
encoder phase (task.variant, optimizer, train.epochs, cv.val_every: the study's selection by
validation AUC, the F1 threshold, metrics.json), so its results have the layout and the reports
of every other model. `config.gan` describes phase 1; `gan_config` turns it into an ordinary
protocol config (selection 'task': the sliced Wasserstein distance between generated and
training images, see uadjax.evaluation.swd), trained by the same engine with the family's GAN
task (`uadjax.train.fanogan.WGANTask`).

Workdir layout, besides cv's (iter_XX/ holds the encoder phase):
  gan/iter_XX/checkpoints/latest/N   the GAN's training carry (resuming), two most recent
  gan/iter_XX/checkpoints/best       the selected generator and critic (lowest SWD)
  gan/iter_XX/history.json           critic loss, the critic's val AUC, SWD (val_metric)
  gan/iter_XX/samples/epoch_NNNNN.png  sample grids at each 'latest' checkpoint (fixed z)
  gan/iter_XX/samples/selected.png   the selected generator's samples (fixed z)
  gan/iter_XX/gan.json               the selection; written last, it marks phase 1 done
  gan/progress.csv                   phase 1's progress log

A rerun resumes whichever phase was interrupted: iterations whose gan.json exists skip phase 1;
each phase resumes from its own 'latest' checkpoints.
"""

from __future__ import annotations

import functools
import os

import jax
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from uadjax import checkpoint, cv, io
from uadjax import config as config_lib
from uadjax.train import fanogan as fanogan_tasks
from uadjax.train import loop

# Folded into an iteration's key for the fixed codes of the sample grids.
_SAMPLES_KEY = 2**31 - 2


def gan_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Phase 1 as an ordinary protocol config: config.gan's values at the top level."""
  c = ml_collections.ConfigDict(config.to_dict())
  g = c.gan
  c.task = g.task
  c.optimizer = g.optimizer
  c.train.epochs = g.epochs
  c.cv.val_every = g.select_every
  c.cv.selection = 'task'
  c.cv.epochs_per_call = g.epochs_per_call
  c.cv.checkpoint_every = g.checkpoint_every
  del c['gan']
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


class _GANGroup(cv._Group):
  """cv's iteration group for phase 1, keeping the SWD in the history and writing a sample grid
  of the current generator at each 'latest' checkpoint.

  Attributes:
    n_samples: images per grid.
  """

  def __init__(self, *args, n_samples: int = 36):
    super().__init__(*args)
    self.n_samples = n_samples

  def _append_history(self, k: int, log: dict, first_epoch: int) -> None:
    super()._append_history(k, log, first_epoch)
    values = np.asarray(log['val_metric']).reshape(-1)
    self.histories[k].setdefault('val_metric', []).extend(float(v) for v in values)

  def save_latest(self, carries) -> None:
    super().save_latest(carries)
    if jax.process_index() != 0:
      return
    for k, i in enumerate(self.iterations):
      epoch = int(carries[k].epoch)
      path = os.path.join(cv.iteration_dir(self.workdir, i), 'samples', f'epoch_{epoch:05d}.png')
      write_grid(path, samples(self.p, i, carries[k].state.variables, self.n_samples))


def samples(protocol: cv.Protocol, iteration: int, variables, n: int) -> np.ndarray:
  """n generated images for the iteration's fixed codes (the same at every epoch)."""
  fn = protocol.engine._cached('samples', lambda: jax.jit(protocol.task.samples, static_argnums=2))
  key = jax.random.fold_in(protocol.iteration_key(iteration), _SAMPLES_KEY)
  return np.asarray(fn(jax.tree.map(jax.numpy.asarray, variables), key, n))


def finish_gan(
  protocol: cv.Protocol, gan_dir: str, iteration: int, carry, history, n_samples: int
) -> dict:
  """Saves the selected GAN, its sample grid, and gan.json (last: it marks phase 1 done)."""
  folder = cv.iteration_dir(gan_dir, iteration)
  checkpoint.save(
    os.path.join(folder, 'checkpoints', 'best'),
    {**carry.best, 'epoch': carry.best_epoch, 'metric': carry.best_metric},
  )
  info = {
    'iteration': iteration,
    'selection': 'sliced Wasserstein distance x 1e3, generated vs. training images (lower)',
    'selected_epoch': int(carry.best_epoch),
    'selected_swd': float(-carry.best_metric),
    'select_epochs': history['val_epoch'],
    'swd': history.get('val_metric', []),
    'critic_val_auc': history['val_auc'],
    'epoch': history['epoch'],
    'critic_loss': history['train_loss'],
  }
  if jax.process_index() == 0:
    write_grid(
      os.path.join(folder, 'samples', 'selected.png'),
      samples(protocol, iteration, carry.best, n_samples),
    )
    io.write_json(os.path.join(folder, 'gan.json'), info)
  logging.info(
    'Iteration %d: GAN selected at epoch %d (SWD %.2f).',
    iteration,
    info['selected_epoch'],
    info['selected_swd'],
  )
  return info


class EncoderProtocol(cv.Protocol):
  """The encoder phase's protocol: each iteration starts from its selected GAN.

  Attributes:
    gan_variables: iteration -> the selected GAN's variables ({'params', 'batch_stats'}).
  """

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self.gan_variables: dict[int, dict] = {}

  def initial_carry(self, iteration: int) -> loop.Carry:
    """A fresh encoder with the iteration's frozen generator and critic."""
    state = super().initial_carry(iteration).state
    gan = self.gan_variables[iteration]
    params = {
      **state.params,
      'generator': gan['params']['generator'],
      'critic': gan['params']['critic'],
    }
    return loop.initial_carry(state.replace(params=params, batch_stats=gan['batch_stats']))


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) both phases of every selected iteration; returns the summary."""
  config_lib.validate(config)  # both phases' fields, before anything is read or written
  gan_protocol = cv.Protocol(gan_config(config), task_class=fanogan_tasks.WGANTask)
  protocol = EncoderProtocol(config)
  iterations = config_lib.selected_iterations(config, len(protocol.splits))
  with cv.open_run(config, workdir, protocol):
    gan_dir = os.path.join(workdir, 'gan')
    results = cv.finished_results(workdir, iterations)
    todo = [i for i in iterations if i not in results]
    gan_done = lambda i: os.path.exists(os.path.join(cv.iteration_dir(gan_dir, i), 'gan.json'))

    # Phase 1: the GANs not yet selected.
    def finish_phase1(i, carry, history):
      finish_gan(gan_protocol, gan_dir, i, carry, history, config.gan.samples)

    groups, parallel = cv.iteration_groups(config, [i for i in todo if not gan_done(i)])
    logging.info('GAN phase: iterations %s.', [i for g in groups for i in g])
    make_group = functools.partial(_GANGroup, n_samples=config.gan.samples)
    cv.train_groups(gan_protocol, gan_dir, groups, parallel, finish_phase1, make_group)

    # Phase 2: the encoders, from the selected GANs.
    for i in todo:
      best = checkpoint.restore(os.path.join(cv.iteration_dir(gan_dir, i), 'checkpoints', 'best'))
      protocol.gan_variables[i] = {'params': best['params'], 'batch_stats': best['batch_stats']}

    def finish_phase2(i, carry, history):
      results[i] = cv.finish_iteration(protocol, workdir, i, carry, history)

    groups, parallel = cv.iteration_groups(config, todo)
    logging.info('Encoder phase (%s): iterations %s.', config.task.variant, todo)
    cv.train_groups(protocol, workdir, groups, parallel, finish_phase2)
    ordered = [results[i] for i in iterations]
    if jax.process_index() != 0:
      return cv.summarize(config, ordered)
    return cv.write_summary(config, workdir, ordered)
