"""The 2x5 protocol's invariants, and the fundus experiments' hold-out split."""

import numpy as np
import pytest

from uadjax.data import DataError
from uadjax.data.splits import cross_validation_splits, holdout_split


def _labels_groups(n_normal=100, n_abnormal=100, duplicate=(188, 189)):
  labels = np.array([1] * n_abnormal + [0] * n_normal)
  groups = np.arange(len(labels))
  if duplicate:
    groups[duplicate[1]] = groups[duplicate[0]]
  return labels, groups


def test_ten_iterations_with_the_studys_sizes_and_roles():
  labels, groups = _labels_groups()
  splits = cross_validation_splits(labels, groups, seed=0)
  assert len(splits) == 10
  assert [(s.normal_fold, s.abnormal_half) for s in splits[:3]] == [(0, 0), (0, 1), (1, 0)]
  for s in splits:
    assert len(s.train) == 60 and len(s.val) == 70 and len(s.test) == 70
    assert (labels[s.train] == 0).all()
    assert (labels[s.val] == 1).sum() == 50 and (labels[s.test] == 1).sum() == 50
    sides = [set(s.train), set(s.val), set(s.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(sides[0] | sides[1] | sides[2]) == 200


def test_each_normal_is_tested_once_per_half_and_abnormal_halves_swap():
  labels, groups = _labels_groups()
  splits = cross_validation_splits(labels, groups, seed=1)
  for b in (0, 1):
    tested = np.concatenate([s.test[labels[s.test] == 0] for s in splits if s.abnormal_half == b])
    assert sorted(tested) == list(range(100, 200))
  s0, s1 = splits[0], splits[1]
  assert set(s0.val[labels[s0.val] == 1]) == set(s1.test[labels[s1.test] == 1])


def test_duplicates_stay_on_one_side():
  labels, groups = _labels_groups()
  for seed in range(5):
    for s in cross_validation_splits(labels, groups, seed=seed):
      side = [
        name
        for name, idx in (('train', s.train), ('val', s.val), ('test', s.test))
        if 188 in idx or 189 in idx
      ]
      both = [
        name
        for name, idx in (('train', s.train), ('val', s.val), ('test', s.test))
        if 188 in idx and 189 in idx
      ]
      assert side == both and len(both) == 1


def test_reproducible_by_seed_and_shuffled():
  labels, groups = _labels_groups()
  a = cross_validation_splits(labels, groups, seed=0)
  b = cross_validation_splits(labels, groups, seed=0)
  c = cross_validation_splits(labels, groups, seed=1)
  assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))
  assert not np.array_equal(a[0].test, c[0].test)
  # Shuffled: the first fold is not simply the first 20 normal ids.
  assert not np.array_equal(np.sort(a[0].train), np.arange(100, 160))


def test_uneven_folds_differ_by_at_most_one_and_lose_no_image():
  labels, groups = _labels_groups(n_normal=23, n_abnormal=7, duplicate=None)
  splits = cross_validation_splits(labels, groups)
  folds = {len(s.test[labels[s.test] == 0]) for s in splits}
  halves = {len(s.test[labels[s.test] == 1]) for s in splits}
  assert folds == {4, 5} and halves == {3, 4}
  assert all(len(s.train) + len(s.val) + len(s.test) == 30 for s in splits)


def test_too_few_images_is_a_clear_error():
  labels, groups = _labels_groups(n_normal=4, n_abnormal=5, duplicate=None)
  with pytest.raises(DataError, match='4 distinct normal images'):
    cross_validation_splits(labels, groups)
  labels, groups = _labels_groups(n_normal=10, n_abnormal=1, duplicate=None)
  with pytest.raises(DataError, match='1 distinct abnormal'):
    cross_validation_splits(labels, groups)


def test_conflicting_labels_on_identical_images_are_refused():
  labels = np.array([0, 1, 0, 0, 0, 0, 0, 1])
  groups = np.array([0, 0, 1, 2, 3, 4, 5, 6])
  with pytest.raises(DataError, match='different labels'):
    cross_validation_splits(labels, groups)


def test_holdout_split_fractions_groups_and_the_test_only_class():
  labels = np.array([0] * 50 + [1] * 20 + [2] * 5)
  groups = np.arange(75)
  groups[1] = groups[0]  # two identical normals
  s = holdout_split(labels, groups, seed=3)
  assert (len(s.train), len(s.val), len(s.test)) == (30 + 12, 10 + 4, 10 + 4)
  assert np.bincount(labels[s.train], minlength=2).tolist() == [30, 12]
  everything = np.concatenate([s.train, s.val, s.test])
  assert len(np.unique(everything)) == 70 and not (labels[everything] == 2).any()
  sides = [k for k, part in enumerate((s.train, s.val, s.test)) if 0 in part or 1 in part]
  assert len(sides) == 1  # the identical pair sits on one side
  u = holdout_split(labels, groups, seed=3, abnormal_fractions=(0.0, 0.5, 0.5))
  assert (labels[u.train] == 0).all()
  assert np.bincount(labels[u.val])[1] == 10 and np.bincount(labels[u.test])[1] == 10
  assert holdout_split(labels, groups, seed=4).train.tolist() != s.train.tolist()
  with pytest.raises(ValueError, match='summing to 1'):
    holdout_split(labels, groups, normal_fractions=(0.6, 0.3, 0.3))
