"""The study's 2x5 cross-validation splits.

Normal images are dealt into 5 folds and abnormal images into 2 halves (shuffled, seeded). For
fold offset g in 0..4 and half b in 0..1 (iteration 2g + b):
  train      = normal folds g, g+1, g+2 (mod 5)        -- 60 % of the normals, no abnormals;
  validation = normal fold g+3 + abnormal half b;
  test       = normal fold g+4 + abnormal half 1-b.
Whole duplicate groups are dealt, never single images, so identical images stay on one side.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from uadjax.data.readers import DataError


@dataclasses.dataclass(frozen=True)
class Split:
  """One iteration of the protocol: index arrays into the dataset."""

  iteration: int
  normal_fold: int
  abnormal_half: int
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray


def deal_groups(groups: np.ndarray, n_parts: int, rng: np.random.Generator) -> list[np.ndarray]:
  """Shuffles the distinct groups and deals them into `n_parts` parts of near-equal image count.

  Returns:
    For each part, the sorted indices (into `groups`) of its images.
  """
  ids = np.unique(groups)
  rng.shuffle(ids)
  parts: list[list[int]] = [[] for _ in range(n_parts)]
  for g in ids:
    members = np.flatnonzero(groups == g).tolist()
    # Greedy: the part with fewest images so far (first on ties) takes the whole group.
    smallest = min(range(n_parts), key=lambda p: len(parts[p]))
    parts[smallest].extend(members)
  return [np.array(sorted(p), np.int64) for p in parts]


def cross_validation_splits(
  labels, groups, seed: int = 0, n_folds: int = 5, n_halves: int = 2, train_folds: int = 3
) -> list[Split]:
  """The 2x5 = 10 splits of the study (n_halves x n_folds in general).

  Args:
    labels: (n,) 0 normal / 1 abnormal.
    groups: (n,) duplicate-group ids (`uadjax.data.dataset.duplicate_groups`).
    seed: the shuffle seed.
    n_folds: normal folds (study: 5); train uses `train_folds` of them, validation and test one
      each, so n_folds must equal train_folds + 2.
    n_halves: abnormal parts (study: 2); validation takes one, test another.
  """
  labels = np.asarray(labels)
  groups = np.asarray(groups)
  if n_folds != train_folds + 2:
    raise ValueError(f'n_folds={n_folds} must be train_folds + 2 = {train_folds + 2}.')
  for g in np.unique(groups):
    if len(np.unique(labels[groups == g])) > 1:
      raise DataError(f'Identical images carry different labels (group {g}); fix the labels.')
  normal = np.flatnonzero(labels == 0)
  abnormal = np.flatnonzero(labels == 1)
  n_normal_groups = len(np.unique(groups[normal]))
  n_abnormal_groups = len(np.unique(groups[abnormal]))
  if n_normal_groups < n_folds:
    raise DataError(
      f'{n_normal_groups} distinct normal images; the protocol needs at least '
      f'{n_folds} (one per fold).'
    )
  if n_abnormal_groups < n_halves:
    raise DataError(
      f'{n_abnormal_groups} distinct abnormal images; the protocol needs at least {n_halves}.'
    )
  rng = np.random.default_rng(seed)
  folds = [normal[p] for p in deal_groups(groups[normal], n_folds, rng)]
  halves = [abnormal[p] for p in deal_groups(groups[abnormal], n_halves, rng)]
  splits = []
  for g in range(n_folds):
    for b in range(n_halves):
      train = np.sort(np.concatenate([folds[(g + k) % n_folds] for k in range(train_folds)]))
      val = np.sort(np.concatenate([folds[(g + train_folds) % n_folds], halves[b]]))
      test = np.sort(
        np.concatenate([folds[(g + train_folds + 1) % n_folds], halves[(b + 1) % n_halves]])
      )
      splits.append(Split(len(splits), g, b, train, val, test))
  return splits
