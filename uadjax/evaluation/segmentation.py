"""Pixel-level scores of anomaly maps against known lesion masks (the synthetic phantoms).

Both scores pool every pixel of the given images, as Baur et al. do: the maps of normal images
count too (all their pixels are negatives), so a model that lights up healthy tissue pays for it.

Attributes:
  pixel_auroc: area under the ROC curve of the pixel scores (ties counted half).
  dice_curve: Dice of `map >= t` against the mask for every distinct threshold t.
  best_dice: the best Dice over thresholds and the threshold reaching it.
  segmentation_scores: both, as a dict.
"""

from __future__ import annotations

import numpy as np


def _flat(maps, masks):
  maps = np.asarray(maps, np.float64).reshape(-1)
  masks = np.asarray(masks, bool).reshape(-1)
  if maps.shape != masks.shape:
    raise ValueError(f'maps and masks differ in size: {maps.size} vs {masks.size} pixels.')
  return maps, masks


def pixel_auroc(maps, masks) -> float:
  """AUROC of pixel scores `maps` (n, h, w) for the lesion pixels `masks` (n, h, w).

  Mann-Whitney form with average ranks; NaN when the masks are all empty or all full.
  """
  scores, positive = _flat(maps, masks)
  n_pos = int(positive.sum())
  n_neg = positive.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return float('nan')
  # Imported here: scipy.stats takes ~0.6 s to import, and every run's summary imports the
  # reports package (uadjax.reports.report imports this module) without needing it.
  from scipy import stats

  ranks = stats.rankdata(scores)
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def dice_curve(maps, masks) -> tuple[np.ndarray, np.ndarray]:
  """Dice of the segmentation `maps >= t` for every distinct pixel score t (all of them, exactly).

  Returns (thresholds descending, dice at each).
  """
  scores, positive = _flat(maps, masks)
  order = np.argsort(-scores, kind='stable')
  scores, positive = scores[order], positive[order]
  true_pos = np.cumsum(positive)
  predicted = np.arange(1, scores.size + 1)
  # Keep the last pixel of each run of equal scores: `>= t` takes the whole run.
  last = np.r_[scores[1:] != scores[:-1], True]
  dice = 2 * true_pos[last] / (predicted[last] + positive.sum())
  return scores[last], dice


def best_dice(maps, masks) -> tuple[float, float]:
  """(best Dice over thresholds, the threshold), as Baur et al.'s 'best possible Dice'."""
  thresholds, dice = dice_curve(maps, masks)
  if not np.asarray(masks).any():
    return float('nan'), float('nan')
  i = int(np.argmax(dice))
  return float(dice[i]), float(thresholds[i])


def segmentation_scores(maps, masks) -> dict:
  """{'pixel_auroc', 'best_dice', 'dice_threshold'} of maps against masks."""
  dice, threshold = best_dice(maps, masks)
  return {'pixel_auroc': pixel_auroc(maps, masks), 'best_dice': dice, 'dice_threshold': threshold}
