"""Diverged training, told on the host from the logs of each compiled call (the compiled
programs stay pure: no callback, no check inside them).

An iteration has diverged at the first epoch whose mean training loss is
  - not finite (NaN or infinite), or
  - larger in magnitude than FACTOR x max(1, |untrained loss|), the untrained loss being the
    first step's loss of the first epoch (`uadjax.train.loop.Engine.run_epoch`'s 'start_loss').
    A loss a million times the untrained model's is no longer training (the CAE at
    learning_rate=1e4: 1.5e27 in its first epoch, against an untrained 0.22); the floor of 1
    keeps a loss that starts near 0 (a critic's) from being called diverged for growing to a
    few units.
It is stopped after the compiled call in which it diverged: nothing more is trained, saved or
evaluated for it. Its metrics.json records the divergence (`uadjax.run.records.DivergedRecord`)
instead of test metrics, so a rerun does not train it again; the summary leaves it out of the
mean and lists it, and the entry point exits with EXIT_STATUS. A selected model whose
validation or test scores are not finite is marked the same way, at the epoch it was selected at
(`non_finite_scores`), before any threshold or metric is computed from them.
"""

from __future__ import annotations

import math

import numpy as np

from uadjax.run import records

FACTOR = 1e6
# The exit status of a run that finished with at least one diverged iteration (0: none; 2: a
# user error; 128 + n: stopped by signal n).
EXIT_STATUS = 3


def bound(history: dict) -> float | None:
  """The largest loss magnitude still called training (FACTOR x max(1, |untrained loss|)),
  or None where the history has no untrained loss (a run older than 'start_loss')."""
  starts = history.get('start_loss') or []
  if not starts or len(starts) != len(history['epoch']) or history['epoch'][0] != 1:
    return None
  untrained = starts[0]
  if not math.isfinite(untrained):
    return 0.0  # the untrained model's loss is not finite: any loss is diverged
  return FACTOR * max(1.0, abs(untrained))


def check(history: dict, after_epoch: int) -> dict | None:
  """The first epoch after `after_epoch` whose training loss diverged: {'epoch', 'loss',
  'reason'}, or None."""
  limit = bound(history)
  for epoch, loss in zip(history['epoch'], history['train_loss'], strict=True):
    if epoch <= after_epoch:
      continue
    if not math.isfinite(loss):
      return {'epoch': epoch, 'loss': loss, 'reason': 'the training loss is not finite'}
    if limit is not None and abs(loss) > limit:
      reason = (
        f'the training loss exceeds {FACTOR:.0e} x the untrained loss '
        f'({history["start_loss"][0]:.4g})'
      )
      return {'epoch': epoch, 'loss': loss, 'reason': reason}
  return None


def message(iteration: int, phase: str, found: dict) -> str:
  """The log line of a divergence."""
  where = f' ({phase} phase)' if phase else ''
  return (
    f'Iteration {iteration}{where} diverged at epoch {found["epoch"]}: {found["reason"]} '
    f'(loss {found["loss"]:.4g}). Stopped; it is left out of the summary (a lower '
    'optimizer.learning_rate usually helps).'
  )


def non_finite_scores(scores: dict[str, np.ndarray]) -> str | None:
  """What is not finite among named score arrays ('validation': ..., 'test': ...), or None."""
  bad = []
  for name, values in scores.items():
    n = int(np.sum(~np.isfinite(np.asarray(values, np.float64))))
    if n:
      bad.append(f'{n} of {len(values)} {name} scores')
  return ', '.join(bad) + ' are not finite' if bad else None


def record(split, phase: str, found: dict, history: dict) -> dict:
  """The metrics.json of a diverged iteration (`records.DivergedRecord`), as a dict."""
  epoch = found['epoch']
  kept = [k for k, e in enumerate(history['epoch']) if e <= epoch]
  return records.DivergedRecord(
    iteration=split.iteration,
    normal_fold=split.normal_fold,
    abnormal_half=split.abnormal_half,
    diverged={
      'phase': phase,
      'epoch': int(epoch),
      'loss': float(found['loss']),
      'reason': found['reason'],
      'message': message(split.iteration, phase, found),
    },
    history={
      'epoch': [history['epoch'][k] for k in kept],
      'train_loss': [history['train_loss'][k] for k in kept],
    },
  ).to_json()
