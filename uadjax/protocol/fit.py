"""The protocol of a fitted family (`uadjax.train.task.FitTask`): no epochs, one pass.

Every image's features are computed once for the run (`FitTask.embed`, one compiled program
over batches of `train.score_batch` images: the images are the same in every iteration, only
the splits differ). Then, per iteration: `fit` on the training normals' features gives the
candidates; each is scored on the validation set; the one `cv.selection` prefers (the best
validation AUC; 'val_loss': the lowest mean normal score; 'last': the last candidate) is kept,
saved and evaluated on the test set like a trained family's selected checkpoint
(`uadjax.protocol.evaluate.finish_iteration`). Nothing here trains; a stop request is honoured
between iterations, each of which is finished (metrics.json) or not started.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np
from absl import logging

from uadjax.evaluation.metrics import auc
from uadjax.protocol.setup import Protocol
from uadjax.run import stop
from uadjax.run.compiler import SCORING
from uadjax.train.loop import Carry, in_batches, score_all


def embed_all(protocol: Protocol):
  """Every image's features (`task.embed`), as device arrays with a leading image axis."""
  engine, task = protocol.engine, protocol.task
  embed = engine.cached('embed', lambda: engine.jit(task.embed, SCORING))
  images = jax.device_put(protocol.dataset.images)
  start = time.time()
  features = in_batches(
    engine, embed, engine.frozen, images, np.arange(len(images)), progress='Features'
  )
  seconds = time.time() - start
  logging.info(
    'Features of %d images: %.1f s (%.1f images/s, compiling included).',
    len(images),
    seconds,
    len(images) / max(seconds, 1e-9),
  )
  return jax.device_put(features)


def scorer(protocol: Protocol, features) -> Callable:
  """`score(variables, indices) -> scores (numpy)` of dataset images: from `features` where
  the task scores them (`embeds_scores`), else through the engine's scoring program on the
  images; the task's frozen variables merged in either way."""
  engine, task = protocol.engine, protocol.task
  if task.embeds_scores:
    fn = engine.cached('score_embedded', lambda: engine.jit(task.score_embedded, SCORING))
    return lambda variables, indices: in_batches(
      engine, fn, {**variables, **engine.frozen}, features, indices
    )
  images = jax.device_put(protocol.dataset.images)
  return lambda variables, indices: score_all(engine, variables, images, indices)[0]


def select(protocol: Protocol, candidates: list, score, split) -> tuple[int, dict]:
  """The index of the candidate `cv.selection` keeps, and the history naming every candidate
  with its validation AUC and loss."""
  labels = protocol.dataset.labels[split.val]
  aucs, losses = [], []
  for _, variables in candidates:
    scores = score(jax.device_put(variables), split.val)
    aucs.append(float(auc(scores, labels, xp=np)))
    losses.append(float(np.mean(scores[labels == 0])) if np.any(labels == 0) else float('nan'))
  selection = protocol.config.cv.selection
  if selection == 'last':
    best = len(candidates) - 1
  elif selection == 'val_loss':
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else 0
  else:  # 'val_auc'; the first of equals
    best = int(np.nanargmax(aucs)) if np.isfinite(aucs).any() else 0
  history = {
    'epoch': [],
    'train_loss': [],
    'candidate': [name for name, _ in candidates],
    'val_auc': aucs,
    'val_loss': losses,
    'selected_candidate': candidates[best][0],
  }
  return best, history


def fit_iterations(protocol: Protocol, todo: list[int], finish: Callable) -> None:
  """Fits, selects and finishes each iteration of `todo` in turn:
  `finish(iteration, carry, history, score_fn)` saves and evaluates it."""
  if not todo:
    return
  features = embed_all(protocol)
  score = scorer(protocol, features)
  for i in todo:
    if stop.requested():
      raise stop.Stopped(
        f'Stopped before fitting iteration {i}; rerun the same command to resume.',
        stop.requested(),
      )
    split = protocol.splits[i]
    start = time.time()
    # The training normals only: a hold-out split may put abnormal images in training.
    normals = split.train[protocol.dataset.labels[split.train] == 0]
    train = jax.tree.map(lambda f: np.asarray(f[normals]), features)  # noqa: B023
    candidates = protocol.task.fit(protocol.iteration_key(i), train)
    best, history = select(protocol, candidates, score, split)
    names = [name for name, _ in candidates]
    logging.info(
      'Iteration %d: fitted to %d training normals in %.1f s; validation AUC %s; kept %s.',
      i,
      len(normals),
      time.time() - start,
      ', '.join(f'{n} {a:.3f}' for n, a in zip(names, history['val_auc'], strict=True)),
      history['selected_candidate'],
    )
    variables = jax.tree.map(np.asarray, candidates[best][1])
    carry = Carry(
      state=None,
      best=variables,
      best_metric=np.float32(history['val_auc'][best]),
      best_epoch=np.int32(0),
      epoch=np.int32(0),
    )
    finish(i, carry, history, score)
