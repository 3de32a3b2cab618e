"""The study's splits: the 2x5 cross-validation (head CT) and the seeded hold-out (fundus).

Normal images are dealt into 5 folds and abnormal images into 2 halves (shuffled, seeded). For
fold offset g in 0..4 and half b in 0..1 (iteration 2g + b):
  train      = normal folds g, g+1, g+2 (mod 5)        -- 60 % of the normals, no abnormals;
  validation = normal fold g+3 + abnormal half b;
  test       = normal fold g+4 + abnormal half 1-b.
Whole duplicate groups are dealt, never single images, so identical images stay on one side.

`holdout_split` is the fundus study's single split: each class divided by its own (train,
validation, test) fractions, e.g. 60/20/20 of good and of poor (supervised, stratified) or
60/20/20 of good and 0/50/50 of poor (unsupervised: no abnormal image is trained on).
Images labelled 2 (a test-only class) are in no split.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from uadjax.data.readers import DataError


@dataclasses.dataclass(frozen=True)
class Split:
  """One iteration of the protocol: index arrays into the dataset."""

  iteration: int
  normal_fold: int | None  # None for the hold-out split
  abnormal_half: int | None
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray


# The protocols' splits (`cv.scheme`): the head-CT study's 2x5 cross-validation, the fundus
# study's one hold-out split.
SCHEMES = ('2x5', 'holdout')


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


def holdout_split(
  labels,
  groups,
  seed: int = 0,
  normal_fractions=(0.6, 0.2, 0.2),
  abnormal_fractions=(0.6, 0.2, 0.2),
) -> Split:
  """One seeded train / validation / test split with per-class fractions (iteration 0).

  Args:
    labels: (n,) 0 normal / 1 abnormal (2: test-only, left out).
    groups: (n,) duplicate-group ids.
    seed: the shuffle seed.
    normal_fractions, abnormal_fractions: (train, validation, test) shares of each class; each
      triple sums to 1. Counts are rounded down for train and validation; test takes the rest.
  """
  labels = np.asarray(labels)
  groups = np.asarray(groups)
  rng = np.random.default_rng(seed)
  parts: list[list[np.ndarray]] = [[], [], []]
  for label, fractions in ((0, normal_fractions), (1, abnormal_fractions)):
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
      raise ValueError(
        f'cv fractions of label {label}: {fractions}; expected (train, val, test) >= 0, '
        'summing to 1.'
      )
    members = np.flatnonzero(labels == label)
    if len(members) == 0:
      raise DataError(f'No images with label {label}: the hold-out split needs both classes.')
    ids = np.unique(groups[members])
    rng.shuffle(ids)
    n = len(members)
    bounds = (int(fractions[0] * n), int((fractions[0] + fractions[1]) * n))
    taken = 0
    for g in ids:
      # Whole groups: a group goes to the part whose share the running count has reached.
      in_group = members[groups[members] == g]
      part = 0 if taken < bounds[0] else 1 if taken < bounds[1] else 2
      parts[part].append(in_group)
      taken += len(in_group)
  train, val, test = (np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts)
  return Split(0, None, None, train, val, test)  # no folds: reports show the index alone


def make_splits(config, dataset) -> list[Split]:
  """The splits `config.cv.scheme` names: '2x5' (the head-CT study, the default) or 'holdout'
  (the fundus study: one split, `cv.normal_fractions` / `cv.abnormal_fractions`)."""
  c = config.cv
  scheme = c.get('scheme', '2x5')
  if scheme == '2x5':
    return cross_validation_splits(
      dataset.labels, dataset.groups, seed=config.seed, n_folds=c.n_folds, n_halves=c.n_halves
    )
  if scheme == 'holdout':
    return [
      holdout_split(
        dataset.labels,
        dataset.groups,
        seed=config.seed,
        normal_fractions=tuple(c.normal_fractions),
        abnormal_fractions=tuple(c.abnormal_fractions),
      )
    ]
  raise ValueError(f'cv.scheme={scheme!r}; expected one of {SCHEMES}.')
