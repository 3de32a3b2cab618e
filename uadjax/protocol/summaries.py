"""TensorBoard event files of a run: one TensorBoard run per iteration, WORKDIR/tensorboard/iter_XX
(a phase's in tensorboard/PHASE/iter_XX), so `tensorboard --logdir WORKDIR` shows a run while it
trains, and `--logdir` on a folder of runs (an `experiments.compare`'s) shows them together.

Written with tensorboardX, which writes event files without TensorFlow, on process 0 only, on
the host, from the logs each compiled call hands back (never inside a compiled program):
  train/loss            each epoch's mean training loss (step: the epoch, from 1)
  train/learning_rate   the optimiser's rate after each epoch: the config's schedule
                        (`uadjax.train.state.learning_rate`) at epoch x steps an epoch, computed
                        on the host (a GAN's n_critic updates aside: its rate is constant)
  validation/auc, validation/loss (and a phase's own validation/metric: f-AnoGAN's SWD x 1e3)
                        at each validation epoch
and at each 'latest' checkpoint, for a task whose maps or reconstructions show something
(`Task.anomaly_maps`, `Task.reconstructs`), `IMAGES` fixed validation images of the iteration
(normal ones first, then abnormal): images/validation, images/reconstruction and
images/anomaly_map (each map scaled by the largest of the set), by the scoring program the
validation and the test set use (nothing new is compiled).

A family that fits instead of training (`uadjax.protocol.fit`) writes, per iteration, each
candidate's validation/auc and validation/loss (step: the candidate's index, in the order of
`metrics.json`'s `validation.candidate`; the names as the text `candidates`) and the fixed
images' maps under the kept candidate (step 0), scored by a program of their own batch size
(compiled once per run).

A writer opens at its first write: a run resumed at its end writes no event file. A resumed
iteration's writer purges what an interrupted process had written after the epoch it resumes
from (tensorboardX's `purge_step`), so the curves hold one value per epoch.
`cv.tensorboard=False` turns it off.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from uadjax.run.layout import RunDir
from uadjax.train.loop import pad
from uadjax.train.state import learning_rate

# Validation images shown at each checkpoint: up to half of them abnormal.
IMAGES = 4
# Seconds between tensorboardX's flushes besides the one after every compiled call.
_FLUSH_SECS = 30


def enabled(config) -> bool:
  """Whether a run of `config` writes TensorBoard event files (`cv.tensorboard`, default on)."""
  return bool(config.cv.get('tensorboard', True))


def _rgb(images: np.ndarray) -> np.ndarray:
  """(n, h, w, c) in [0, 1] as RGB: gray for one channel, red and green for two."""
  x = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  if x.shape[-1] == 1:
    return np.repeat(x, 3, axis=-1)
  if x.shape[-1] == 2:
    return np.concatenate([x, np.zeros_like(x[..., :1])], axis=-1)
  return x[..., :3]


def _row(images: np.ndarray) -> np.ndarray:
  """(n, h, w, 3) images side by side with 2-pixel white gutters: (h + 4, n (w + 2) + 2, 3)."""
  n, h, w, _ = images.shape
  out = np.ones((h + 4, n * (w + 2) + 2, 3), np.float32)
  for k in range(n):
    out[2 : 2 + h, 2 + k * (w + 2) : 2 + k * (w + 2) + w] = images[k]
  return out


class Summaries:
  """The TensorBoard runs of one group of iterations (one phase of a run).

  Args:
    protocol: the run's (or the phase's) set-up: its config, task, engine, data and splits.
    run_dir: the phase's folder (`RunDir`).
  """

  def __init__(self, protocol, run_dir: RunDir):
    self.p = protocol
    self.run_dir = run_dir
    self.enabled = enabled(protocol.config) and jax.process_index() == 0
    self.purge_step = None
    self._writers: dict = {}
    self._schedule = None  # (the learning rate or its schedule, steps an epoch), at first use

  def resume_at(self, epoch: int) -> None:
    """Training starts after `epoch`: what an earlier process wrote after it is purged."""
    self.purge_step = epoch + 1 if epoch else None

  def _writer(self, iteration: int):
    if iteration not in self._writers:
      from tensorboardX import SummaryWriter  # imported by the first run that writes

      self._writers[iteration] = SummaryWriter(
        self.run_dir.tensorboard(iteration),
        purge_step=self.purge_step,
        flush_secs=_FLUSH_SECS,
        # tensorboardX names a file by the second it opens it: a writer opened in the same
        # second (a stop and a quick resume) would truncate the first one's file.
        filename_suffix=f'.{os.getpid()}.{time.time_ns()}',
      )
    return self._writers[iteration]

  def _rate(self, epoch: int) -> float:
    """The optimiser's learning rate after `epoch` epochs (read only where a call trained: a
    family that fits instead of training needs no optimiser)."""
    if self._schedule is None:
      c, steps = self.p.config, self.p.engine.steps_per_epoch
      self._schedule = (learning_rate(c.optimizer, steps, c.train.epochs), steps)
    rate, steps = self._schedule
    return float(rate(epoch * steps) if callable(rate) else rate)

  def log_call(self, iterations: list[int], logs: list[dict], first_epoch: int) -> None:
    """The scalars of one compiled call: `logs[k]` is iteration `iterations[k]`'s (as numpy),
    whose training began after epoch `first_epoch`."""
    if not self.enabled:
      return
    for iteration, log in zip(iterations, logs, strict=True):
      writer = self._writer(iteration)
      losses = np.asarray(log['train_loss'], np.float64).reshape(-1)
      for k, loss in enumerate(losses):
        epoch = first_epoch + 1 + k
        writer.add_scalar('train/loss', float(loss), epoch)
        writer.add_scalar('train/learning_rate', self._rate(epoch), epoch)
      val_epochs = np.asarray(log['epoch']).reshape(-1)
      for key in sorted(k for k in log if k.startswith('val_')):
        values = np.asarray(log[key], np.float64).reshape(-1)
        for epoch, value in zip(val_epochs, values, strict=True):
          writer.add_scalar(f'validation/{key[4:]}', float(value), int(epoch))
      writer.flush()  # a run is watched while it trains

  def fixed_images(self, iteration: int) -> np.ndarray:
    """The dataset indices of the iteration's images shown at each checkpoint: its first
    validation normals, then its first validation abnormals (up to half of `IMAGES`)."""
    val = np.asarray(self.p.splits[iteration].val)
    labels = self.p.dataset.labels[val]
    abnormal = val[labels == 1][: IMAGES // 2]
    normal = val[labels == 0][: IMAGES - len(abnormal)]
    return np.concatenate([normal, abnormal]).astype(np.int64)

  def log_fitted(self, iteration: int, history: dict, variables) -> None:
    """A fitted iteration: each candidate's validation AUC and loss (step: its index), their
    names, and the fixed images' maps under `variables` (the kept candidate's)."""
    if not self.enabled:
      return
    writer = self._writer(iteration)
    names = history['candidate']
    for k in range(len(names)):
      writer.add_scalar('validation/auc', float(history['val_auc'][k]), k)
      writer.add_scalar('validation/loss', float(history['val_loss'][k]), k)
    listed = ', '.join(f'{k}: {name}' for k, name in enumerate(names))
    writer.add_text('candidates', f'{listed}; kept: {history["selected_candidate"]}', 0)
    # A batch of the shown images only: the scoring program's batch of `score_batch` images
    # would rescore dozens through the backbone each iteration (45 s at 384x384 on 2 cores);
    # one more program, compiled once per run, costs less.
    self._log_images(iteration, variables, 0, batch=IMAGES)

  def log_images(self, iteration: int, carry) -> None:
    """The fixed validation images, their reconstructions and anomaly maps under the carry's
    current variables (a 'latest' checkpoint's), at its epoch."""
    self._log_images(iteration, carry.state.variables, int(carry.epoch))

  def _log_images(self, iteration: int, variables, step: int, batch: int = 0) -> None:
    """The fixed images' figures under `variables` at `step`, scored in batches of `batch`
    images (0: `score_batch`, the program the validation and the test set use)."""
    task = self.p.task
    if not (self.enabled and (task.anomaly_maps or task.reconstructs)):
      return
    indices = self.fixed_images(iteration)
    if not len(indices):
      return
    engine = self.p.engine
    # By default one batch of `score_batch` images, as the validations and the test set are
    # scored: the same compiled program.
    padded, _ = pad(indices, batch or engine.score_batch, fill=int(indices[0]))
    images = self.p.dataset.images
    # The task's frozen variables (a pretrained backbone) join as the scoring does.
    variables = jax.device_put({**variables, **engine.frozen})
    out = engine.compiled_outputs()(variables, jax.device_put(images[padded]))
    out = jax.tree.map(lambda x: np.asarray(x)[: len(indices)], out)
    writer, epoch = self._writer(iteration), step
    shown = images[indices]
    writer.add_image('images/validation', _row(_rgb(shown)), epoch, dataformats='HWC')
    if 'reconstructions' in out:
      recon = _rgb(out['reconstructions'])
      writer.add_image('images/reconstruction', _row(recon), epoch, dataformats='HWC')
    if task.anomaly_maps:
      maps = np.nan_to_num(out['maps'].astype(np.float32))
      maps = maps / max(float(np.max(np.abs(maps))), 1e-12)
      writer.add_image('images/anomaly_map', _row(_rgb(maps[..., None])), epoch, dataformats='HWC')
    writer.flush()

  def close(self) -> None:
    """Flushes and closes every writer."""
    for writer in self._writers.values():
      writer.close()
    self._writers.clear()
