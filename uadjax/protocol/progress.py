"""Progress of a run: each iteration's history (history.json), the CSV log (progress.csv) and
the log line of every compiled call.
"""

from __future__ import annotations

import csv
import os
import time

import jax
import numpy as np
from absl import logging

PROGRESS_COLUMNS = (
  'time',
  'iteration',
  'epoch',
  'epochs',
  'train_loss',
  'val_auc',
  'val_loss',
  'images_per_s',
  'seconds_left',
)


def empty_history() -> dict:
  """The history of an iteration before its first epoch. 'start_loss': each epoch's first
  step's loss (the first epoch's is the untrained model's: `uadjax.protocol.divergence`)."""
  return {
    'epoch': [],
    'train_loss': [],
    'start_loss': [],
    'val_epoch': [],
    'val_auc': [],
    'val_loss': [],
  }


def append_history(history: dict, log: dict, first_epoch: int) -> None:
  """Adds one compiled call's logs to a history: the epochs' losses (mean and first step's),
  and at each validation its epoch and every 'val_*' value (val_auc, val_loss; a phase's own
  val_metric)."""
  losses = np.asarray(log['train_loss']).reshape(-1)
  history['epoch'] += list(range(first_epoch + 1, first_epoch + 1 + len(losses)))
  history['train_loss'] += [float(v) for v in losses]
  starts = history.setdefault('start_loss', [])
  # A history resumed from a run older than 'start_loss' has none to align with: left out.
  if 'start_loss' in log and len(starts) == len(history['epoch']) - len(losses):
    starts.extend(float(v) for v in np.asarray(log['start_loss']).reshape(-1))
  history['val_epoch'] += [int(e) for e in np.asarray(log['epoch']).reshape(-1)]
  for key in sorted(k for k in log if k.startswith('val_')):
    values = np.asarray(log[key]).reshape(-1)
    history.setdefault(key, []).extend(float(v) for v in values)


def truncate_history(history: dict, epoch: int) -> dict:
  """The entries of a saved history up to `epoch` (the history may be newer than the
  checkpoint it is resumed from)."""
  out = {}
  for key, values in history.items():
    epochs = history['val_epoch' if key.startswith('val') else 'epoch']
    if key == 'start_loss' and len(values) != len(epochs):
      continue  # an older run's history, resumed: it has none for its first epochs
    out[key] = [v for v, e in zip(values, epochs, strict=True) if e <= epoch]
  return out


def append_csv(path: str, header, rows) -> None:
  """Appends rows to a CSV file, writing the header first if the file is new."""
  new = not os.path.exists(path)
  with open(path, 'a', newline='') as f:
    writer = csv.writer(f)
    if new:
      writer.writerow(header)
    writer.writerows(rows)


def duration(seconds: float) -> str:
  """Seconds as "1h02m" or "3m07s"."""
  seconds = int(seconds)
  if seconds >= 3600:
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
  return f'{seconds // 60}m{seconds % 60:02d}s'


def log_progress(
  path, iterations, label, epoch, total, logs, start_time, start_epoch, images_per_epoch
) -> None:
  """The log line of one compiled call and its rows of progress.csv (at `path`)."""
  elapsed = time.time() - start_time
  done = epoch - start_epoch
  rate = done * images_per_epoch / max(elapsed, 1e-9)
  eta = elapsed / max(done, 1) * (total - epoch)
  losses = [float(np.asarray(log['train_loss'])[-1, -1]) for log in logs]
  loss = np.mean(losses)
  aucs = [float(np.asarray(log['val_auc'])[-1]) for log in logs]
  if jax.process_index() == 0:
    # The same figures as a CSV log, one row per iteration, so a long run can be plotted
    # while it trains (no TensorBoard dependency needed).
    val_losses = [float(np.asarray(log['val_loss'])[-1]) for log in logs]
    rows = [
      (f'{time.time():.1f}', i, epoch, total, f'{lo:.6g}', f'{a:.4f}', f'{vl:.6g}')
      + (f'{rate:.1f}', f'{eta:.0f}')
      for i, lo, a, vl in zip(iterations, losses, aucs, val_losses, strict=True)
    ]
    append_csv(path, PROGRESS_COLUMNS, rows)
  logging.info(
    '%s: epoch %d/%d  loss %.5f  val AUC %s  %.0f img/s  %s left',
    label,
    epoch,
    total,
    loss,
    ' '.join(f'{a:.3f}' for a in aucs),
    rate,
    duration(eta),
  )
