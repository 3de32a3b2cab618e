"""Pixel-level scores against lesion masks (uadjax.evaluation.segmentation)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from uadjax.evaluation import segmentation


def _case(seed=0):
  rng = np.random.default_rng(seed)
  masks = np.zeros((3, 8, 8), bool)
  masks[0, 2:5, 2:5] = True
  masks[1, 6:, :3] = True
  maps = rng.random((3, 8, 8)) + 0.8 * masks
  return maps, masks


def test_pixel_auroc_matches_sklearn_with_ties():
  maps, masks = _case()
  maps = np.round(maps, 1)  # many ties
  expected = roc_auc_score(masks.reshape(-1), maps.reshape(-1))
  assert segmentation.pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)


def test_perfect_map_scores_one_and_empty_masks_give_nan():
  _, masks = _case()
  assert segmentation.pixel_auroc(masks.astype(float), masks) == 1.0
  dice, threshold = segmentation.best_dice(masks.astype(float), masks)
  assert dice == 1.0 and threshold == 1.0
  assert np.isnan(segmentation.pixel_auroc(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), bool)))


def test_best_dice_is_the_max_over_every_threshold_by_brute_force():
  maps, masks = _case(1)
  maps = np.round(maps, 2)
  best = 0.0
  for t in np.unique(maps):
    pred = maps >= t
    best = max(best, 2 * np.sum(pred & masks) / (pred.sum() + masks.sum()))
  dice, threshold = segmentation.best_dice(maps, masks)
  assert dice == pytest.approx(best)
  pred = maps >= threshold
  assert 2 * np.sum(pred & masks) / (pred.sum() + masks.sum()) == pytest.approx(best)


def test_mismatched_sizes_are_refused():
  with pytest.raises(ValueError, match='differ in size'):
    segmentation.pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), bool))
