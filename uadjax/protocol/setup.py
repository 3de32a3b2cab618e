"""A run's set-up: the data, the splits, the task and engine, each iteration's padded fold data.

`cv.scheme`: '2x5' (head CT: ten iterations of the 2x5 cross-validation, the default) or
'holdout' (fundus: one seeded split, iteration 0). Nothing here trains or writes.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
from absl import logging

from uadjax import config as config_lib
from uadjax import data, families
from uadjax.data import augment as augment_lib
from uadjax.data.splits import Split, make_splits
from uadjax.run import fingerprint as fingerprint_lib
from uadjax.train import loop
from uadjax.train.loop import Carry, Engine, FoldData, pad


def warn_small_classes(splits: list[Split], labels: np.ndarray) -> None:
  """Logs a warning where a split's validation or test set has too few abnormal images for
  its F1 threshold and metrics to mean much (fewer than 2), or no normal image."""
  for s in splits:
    for side, idx in (('validation', s.val), ('test', s.test)):
      positives = int(np.sum(labels[idx] == 1))
      negatives = int(np.sum(labels[idx] == 0))
      if positives < 2 or negatives < 1:
        logging.warning(
          'Iteration %d: its %s set has %d abnormal and %d normal images; the threshold and '
          'F1 need at least 2 and 1.',
          s.iteration,
          side,
          positives,
          negatives,
        )


class Protocol:
  """The data, splits, task and engine of one run (or one phase of it); the driver runs it.

  Args:
    config: the run's (or the phase's) config, validated.
    task_class: another task of the family's model than its own (a phase's: f-AnoGAN's GAN).
    selection: the engine's selection, default `config.cv.selection` (a phase's: 'task').
    hand_overs: `(hand_over(iteration, state) -> state)` applied in order to each fresh state:
      what earlier phases give the scored one (f-AnoGAN: the selected GAN, frozen).
  """

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    task_class: type | None = None,
    selection: str | None = None,
    hand_overs: tuple = (),
  ):
    self.config = config
    c = config
    self.dataset = data.load(c.data)
    self.fingerprint = fingerprint_lib.fingerprint(self.dataset, c.data)
    for group in self.dataset.duplicates():
      logging.info('Identical images (kept on one side of every split): %s', ', '.join(group))
    self.splits: list[Split] = make_splits(c, self.dataset)
    warn_small_classes(self.splits, self.dataset.labels)
    self.image_shape = self.dataset.images.shape[1:]
    self.hand_overs = tuple(hand_overs)
    self.host_augment = None
    if families.get(c.model_name).task.fit_only and task_class is None:
      self._set_up_fitted(c)
      return
    bs = c.train.batch_size
    n_train = [len(s.train) for s in self.splits]
    if min(n_train) < bs:
      raise data.DataError(
        f'An iteration has {min(n_train)} training images, fewer than '
        f'train.batch_size={bs}: no full batch.'
      )
    # The engine runs max(steps) a epoch (smaller splits are padded and masked): the length
    # of a learning-rate schedule.
    self.task = families.make_task(
      c, steps_per_epoch=max(n // bs for n in n_train), task_class=task_class
    )
    if self.task.note():
      logging.info('%s: %s.', families.display_name(c.model_name), self.task.note())
    self.n_train_max = max(n_train)
    self.n_val_max = -(-max(len(s.val) for s in self.splits) // c.train.score_batch) * (
      c.train.score_batch
    )
    steps = [n // bs for n in n_train]
    augment_fn = None
    if c.augment.backend == 'jax':
      cfg = c.augment
      augment_fn = lambda key, images: augment_lib.augment(key, images, cfg)
    elif c.augment.backend == 'albumentations':
      self.host_augment = augment_lib.host_augmenter(c.augment)
    else:
      raise config_lib.ConfigError(
        f"augment.backend={c.augment.backend!r}; expected 'jax' or 'albumentations'."
      )
    self.engine = Engine(
      self.task,
      augment_fn,
      bs,
      max(steps),
      len(set(steps)) == 1,
      c.cv.val_every,
      selection or c.cv.selection,
      c.train.score_batch,
    )

  def _set_up_fitted(self, c) -> None:
    """The task and scoring engine of a fitted family (`FitTask`: no batches, epochs or
    augmentation; `uadjax.protocol.fit` runs it)."""
    self.task = families.make_task(c)
    logging.info('%s: %s.', families.display_name(c.model_name), self.task.note() or 'fitted')
    self.n_train_max = max(len(s.train) for s in self.splits)
    # Only the engine's scoring programs run: one batch of `score_batch` images a call.
    self.engine = Engine(self.task, None, 1, 1, True, 1, c.cv.selection, c.train.score_batch)

  def iteration_key(self, iteration: int):
    """The PRNG key of one iteration (independent of which other iterations run)."""
    return jax.random.fold_in(jax.random.PRNGKey(self.config.seed), iteration)

  def fold_data(self, iteration: int) -> FoldData:
    """The padded device arrays of one iteration's split."""
    s = self.splits[iteration]
    train_idx, train_mask = pad(s.train, self.n_train_max)
    val_idx, val_mask = pad(s.val, self.n_val_max)
    labels = self.dataset.labels
    val_labels = np.where(val_mask, labels[val_idx], 0).astype(np.int32)
    train_labels = np.where(train_mask, labels[train_idx], 0).astype(np.int32)
    counts = np.bincount(labels[s.train], minlength=2)[:2].astype(np.float32)
    # Balanced cross-entropy weights n / (2 n_c) (a supervised task's; others ignore them).
    class_weights = np.where(counts > 0, len(s.train) / (2 * np.maximum(counts, 1)), 0.0)
    return FoldData(
      key=self.iteration_key(iteration),
      train_idx=train_idx,
      train_mask=train_mask,
      val_idx=val_idx,
      val_mask=val_mask,
      val_labels=val_labels,
      train_labels=train_labels,
      class_weights=class_weights.astype(np.float32),
    )

  def initial_carry(self, iteration: int) -> Carry:
    """The untrained carry of one iteration (with what earlier phases hand over)."""
    init_key = jax.random.fold_in(self.iteration_key(iteration), 2**31 - 1)
    carry = self.engine.initial_carry(init_key, self.image_shape)
    if not self.hand_overs:
      return carry
    state = carry.state
    for hand_over in self.hand_overs:
      state = hand_over(iteration, state)
    return loop.initial_carry(state)
