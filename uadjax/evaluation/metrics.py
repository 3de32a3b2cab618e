"""Detection metrics and threshold selection. Positive class = abnormal (label 1).

`auc` runs on the device (JAX, masked, vmappable) so that the trainer can keep the best
checkpoint without leaving the compiled loop, and on the host (`xp=np`, the same code) for the
test metrics; everything else is host numpy, used once per iteration on the selected
checkpoint. (Eager JAX on the host would compile each of its operations, about 20 small
programs a run.)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

METRIC_NAMES = ('auc', 'accuracy', 'recall', 'precision', 'f1', 'specificity')


def auc(scores, labels, mask=None, xp=jnp):
  """Area under the ROC curve (Mann-Whitney U), ties counted one half. JAX, vmappable.

  Args:
    scores: (n,) anomaly scores, higher = more abnormal.
    labels: (n,) 0 normal / 1 abnormal.
    mask: optional (n,) bool; False entries (padding) are ignored.
    xp: the array module: `jax.numpy` (inside compiled code) or `numpy` (on the host); both
      give the same float32 value.

  Returns:
    A float32 scalar; NaN if one class is absent or a (kept) score is not finite: a NaN score
    loses every comparison, which would give a low AUC that looks like a real one (and could
    be selected on).
  """
  scores = xp.asarray(scores, xp.float32)
  labels = xp.asarray(labels)
  mask = xp.ones(scores.shape, bool) if mask is None else xp.asarray(mask, bool)
  pos = mask & (labels == 1)
  neg = mask & (labels == 0)
  # All pairs: n is the validation set (tens to hundreds), so O(n^2) is cheaper than a sort
  # with masks and ties, and it is exact.
  diff = scores[:, None] - scores[None, :]
  wins = xp.where(diff > 0, 1.0, xp.where(diff == 0, 0.5, 0.0))
  pair = pos[:, None] & neg[None, :]
  n_pairs = xp.sum(pair)
  # Sums of halves are exact in float32 (below 2^23 pairs); one float32 division either way.
  wins_sum = xp.sum(xp.where(pair, wins, 0.0)).astype(xp.float32)
  ratio = wins_sum / xp.maximum(n_pairs, 1).astype(xp.float32)
  finite = xp.all(xp.isfinite(scores) | ~mask)
  return xp.where((n_pairs > 0) & finite, ratio, xp.float32(xp.nan))


def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
  """Counts with the rule `abnormal iff score >= threshold`."""
  pred = np.asarray(scores) >= threshold
  labels = np.asarray(labels).astype(bool)
  return {
    'tp': int(np.sum(pred & labels)),
    'fp': int(np.sum(pred & ~labels)),
    'tn': int(np.sum(~pred & ~labels)),
    'fn': int(np.sum(~pred & labels)),
  }


def _safe_div(a: float, b: float) -> float:
  return float(a) / float(b) if b else 0.0


def classification_metrics(scores, labels, threshold: float) -> dict:
  """AUC, accuracy, recall, precision, F1 and specificity at `threshold` (abnormal = positive)."""
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels).astype(int)
  c = confusion(scores, labels, threshold)
  recall = _safe_div(c['tp'], c['tp'] + c['fn'])
  precision = _safe_div(c['tp'], c['tp'] + c['fp'])
  return {
    'auc': float(auc(scores, labels, xp=np)),
    'accuracy': _safe_div(c['tp'] + c['tn'], len(labels)),
    'recall': recall,
    'precision': precision,
    'f1': _safe_div(2 * precision * recall, precision + recall),
    'specificity': _safe_div(c['tn'], c['tn'] + c['fp']),
    **c,
  }


def threshold_curve(scores, labels) -> dict:
  """Precision, recall and F1 of `score >= t` for every distinct score t, ascending.

  Returns:
    {'threshold', 'precision', 'recall', 'f1'}, numpy arrays of equal length.
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels).astype(bool)
  thresholds = np.unique(scores)
  pred = scores[None, :] >= thresholds[:, None]
  tp = np.sum(pred & labels, axis=1)
  fp = np.sum(pred & ~labels, axis=1)
  fn = np.sum(~pred & labels, axis=1)
  precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
  recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
  f1 = np.where(
    precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0
  )
  return {'threshold': thresholds, 'precision': precision, 'recall': recall, 'f1': f1}


def select_threshold(
  scores, labels, method: str = 'f1', quantile: float = 0.95, value: float = 0.5
) -> float:
  """The anomaly threshold chosen on validation scores.

  Args:
    scores: validation scores.
    labels: validation labels (1 = abnormal).
    method: 'f1' (the study: the distinct validation score that maximises F1 of
      `score >= t`; ties go to the highest such t, the most specific) or 'normal_quantile'
      (the `quantile` of the normal validation scores; needs no abnormal images) or 'fixed'
      (`value`: a classifier's P(abnormal) >= 0.5 is its argmax decision).
    quantile: used by 'normal_quantile'.
    value: used by 'fixed'.
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels).astype(int)
  if method == 'f1':
    curve = threshold_curve(scores, labels)
    best = np.flatnonzero(curve['f1'] == curve['f1'].max())[-1]
    return float(curve['threshold'][best])
  if method == 'normal_quantile':
    normal = scores[labels == 0]
    if normal.size == 0:
      raise ValueError('threshold=normal_quantile needs normal validation images; there are none.')
    return float(np.quantile(normal, quantile))
  if method == 'fixed':
    return float(value)
  raise ValueError(
    f"Unknown threshold method {method!r}; expected 'f1', 'normal_quantile' or 'fixed'."
  )


def summarize(per_iteration: list[dict], names=METRIC_NAMES) -> dict:
  """Mean and population std (numpy's default, as the study) of each metric over iterations."""
  out = {}
  for name in names:
    values = np.array([m[name] for m in per_iteration], np.float64)
    out[name] = {
      'mean': float(np.mean(values)),
      'std': float(np.std(values)),
      'values': [float(v) for v in values],
    }
  return out
