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

`read_split_file` and `published_split`: a published train / test split from a CSV
(`data.split_file`, the chest X-rays' `split.csv`): its test split is the test set, training
and validation are drawn from its train split. `make_splits` gives the splits a config names.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re

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


SPLIT_FILE_SPLITS = ('train', 'test')


def split_file_path(data_config) -> str:
  """`data.split_file`, relative to `data.root` unless absolute."""
  root = os.path.expanduser(str(data_config.get('root') or ''))
  return os.path.join(root, os.path.expanduser(str(data_config.split_file)))


def _file_of(name: str) -> str:
  """The file of a data set name: 'a.dcm#2' (frame 2 of a multi-frame file) -> 'a.dcm'."""
  return re.sub(r'#\d+$', '', name)


def read_split_file(path: str, names: list[str]) -> np.ndarray:
  """The published split of each image: (n,) 'train' | 'test', from a CSV with a `split` and a
  `file` column (and optionally `class`: a file is then found as CLASS/FILE too, as the class
  folders name it). A frame of a multi-frame file ('a.dcm#2') takes its file's split.

  Raises:
    DataError: naming the file and the bad rows: no such columns, a split other than 'train'
      or 'test', a row naming no image or an image twice, or images the file does not name.
  """
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:
      rows = list(csv.DictReader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise DataError(f'data.split_file={path}: cannot be read ({e}).') from e
  if not rows or not {'split', 'file'} <= set(rows[0]):
    raise DataError(
      f"data.split_file={path}: expected a CSV with columns 'split' and 'file' (and optionally "
      f"'class'); found {sorted(rows[0]) if rows else 'no rows'}."
    )
  files = {_file_of(n) for n in names}
  found, problems = {}, []
  for line, row in enumerate(rows, start=2):
    split, file = (row.get('split') or '').strip().lower(), (row.get('file') or '').strip()
    cls = (row.get('class') or '').strip()
    name = file if file in files else f'{cls}/{file}' if cls and f'{cls}/{file}' in files else None
    if split not in SPLIT_FILE_SPLITS:
      problems.append(f'row {line}: split {split!r} (expected train or test)')
    elif name is None:
      problems.append(f'row {line}: {file!r} is not an image of the data set')
    elif name in found:
      problems.append(f'row {line}: {name} is named twice')
    else:
      found[name] = split
  missing = sorted(files - set(found))
  if missing:
    shown = ', '.join(missing[:5]) + (f' and {len(missing) - 5} more' if len(missing) > 5 else '')
    problems.append(f'{len(missing)} images have no row: {shown}')
  if problems:
    shown = '; '.join(problems[:10]) + (
      f'; and {len(problems) - 10} more' if len(problems) > 10 else ''
    )
    raise DataError(f'data.split_file={path}: {shown}.')
  return np.array([found[_file_of(n)] for n in names])


def published_split(
  labels,
  groups,
  assigned,
  seed: int = 0,
  normal_fractions=(0.8, 0.2, 0.0),
  abnormal_fractions=(0.8, 0.2, 0.0),
) -> Split:
  """The split of a published train / test assignment (`read_split_file`): the test split is
  scored once; training and validation are drawn, seeded, from the train split alone with the
  hold-out's per-class (train, validation, 0) fractions (`holdout_split`): held-out normals and
  the train split's abnormal images validate, the rest trains (unsupervised families fit the
  training normals only)."""
  assigned = np.asarray(assigned)
  pool = np.flatnonzero(assigned == 'train')
  if max(float(normal_fractions[2]), float(abnormal_fractions[2])) > 0:
    raise ValueError(
      'cv.normal_fractions and cv.abnormal_fractions must give the test share 0 with '
      'data.split_file (its test split is the test set).'
    )
  inner = holdout_split(
    np.asarray(labels)[pool], np.asarray(groups)[pool], seed, normal_fractions, abnormal_fractions
  )
  labels = np.asarray(labels)
  # The test-only class (label 2: data.extra_test_classes) is scored on its own, in no split.
  test = np.flatnonzero((assigned == 'test') & (labels != 2))
  for side, members in (('train', pool), ('test', test)):
    for label, name in ((0, 'normal'), (1, 'abnormal')):
      if not np.any(labels[members] == label):
        raise DataError(f'data.split_file: its {side} split has no {name} image.')
  return Split(0, None, None, pool[inner.train], pool[inner.val], test)


def make_splits(config, dataset) -> list[Split]:
  """The splits `config.cv.scheme` names: '2x5' (the head-CT study, the default) or 'holdout'
  (the fundus study: one split, `cv.normal_fractions` / `cv.abnormal_fractions`; with
  `data.split_file`, a published train / test split, validation drawn from its train split:
  `published_split`)."""
  c = config.cv
  scheme = c.get('scheme', '2x5')
  if scheme == '2x5':
    return cross_validation_splits(
      dataset.labels, dataset.groups, seed=config.seed, n_folds=c.n_folds, n_halves=c.n_halves
    )
  if scheme == 'holdout' and config.data.get('split_file'):
    assigned = read_split_file(split_file_path(config.data), dataset.names)
    return [
      published_split(
        dataset.labels,
        dataset.groups,
        assigned,
        seed=config.seed,
        normal_fractions=tuple(c.normal_fractions),
        abnormal_fractions=tuple(c.abnormal_fractions),
      )
    ]
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
