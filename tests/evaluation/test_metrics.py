"""Metrics against scikit-learn and hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from uadjax.evaluation import metrics


@pytest.mark.parametrize('seed', range(4))
def test_auc_equals_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, 6, 80).astype(np.float32)  # many ties
  labels = rng.integers(0, 2, 80)
  assert float(metrics.auc(scores, labels)) == pytest.approx(roc_auc_score(labels, scores), 1e-6)


@pytest.mark.parametrize('seed', range(4))
def test_host_auc_is_the_jitted_one_bit_for_bit(seed):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=37).astype(np.float64)  # float64 in, as the test metrics pass it
  scores[:5] = scores[5:10]  # ties
  labels = rng.integers(0, 2, 37)
  mask = np.arange(37) < 33
  host = metrics.auc(scores, labels, mask, xp=np)
  device = jax.jit(metrics.auc)(scores.astype(np.float32), labels, mask)
  assert host.dtype == np.float32 and float(host) == float(device)


def test_auc_ignores_masked_padding_and_vmaps():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(3, 40)).astype(np.float32)
  labels = rng.integers(0, 2, (3, 40))
  mask = np.arange(40)[None, :] < np.array([[40], [31], [25]])
  got = jax.vmap(metrics.auc)(jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(mask))
  for i in range(3):
    n = mask[i].sum()
    assert float(got[i]) == pytest.approx(roc_auc_score(labels[i, :n], scores[i, :n]), 1e-6)


def test_auc_is_nan_without_both_classes():
  assert np.isnan(float(metrics.auc(np.ones(4), np.zeros(4))))
  assert np.isnan(float(metrics.auc(np.ones(4), np.zeros(4), xp=np)))


def test_f1_threshold_is_the_best_possible():
  rng = np.random.default_rng(0)
  scores = rng.normal(size=70)
  labels = (rng.random(70) < 0.6).astype(int)
  scores[labels == 1] += 0.8
  t = metrics.select_threshold(scores, labels, 'f1')
  best = max(f1_score(labels, scores >= c) for c in np.unique(scores))
  assert f1_score(labels, scores >= t) == pytest.approx(best)


def test_normal_quantile_threshold():
  scores = np.arange(10.0)
  labels = np.array([0] * 5 + [1] * 5)
  assert metrics.select_threshold(scores, labels, 'normal_quantile', 0.5) == 2.0


def test_classification_metrics_by_hand():
  scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2])
  labels = np.array([0, 0, 1, 1, 1, 0])
  m = metrics.classification_metrics(scores, labels, 0.35)
  # predicted abnormal: 0.4 (fp), 0.35 (tp), 0.8 (tp), 0.7 (tp)
  assert (m['tp'], m['fp'], m['tn'], m['fn']) == (3, 1, 2, 0)
  assert m['recall'] == 1.0 and m['precision'] == 0.75 and m['specificity'] == 2 / 3
  assert m['accuracy'] == pytest.approx(5 / 6) and m['f1'] == pytest.approx(6 / 7)


def test_summary_uses_population_std():
  s = metrics.summarize([{'auc': 0.6}, {'auc': 0.8}], names=('auc',))
  assert s['auc']['mean'] == pytest.approx(0.7) and s['auc']['std'] == pytest.approx(0.1)


def test_fixed_threshold_and_unknown_method():
  assert metrics.select_threshold([0.1, 0.9], [0, 1], 'fixed', value=0.5) == 0.5
  with pytest.raises(ValueError, match='fixed'):
    metrics.select_threshold([0.1, 0.9], [0, 1], 'median')


def test_auc_is_nan_when_a_kept_score_is_not_finite():
  # A NaN score loses every comparison: without the check the AUC looks real (here 0.5).
  scores = np.array([0.1, np.nan, 0.3, 0.9], np.float32)
  labels = np.array([0, 0, 1, 1])
  assert np.isnan(metrics.auc(scores, labels, xp=np))
  assert np.isnan(float(metrics.auc(jnp.asarray(scores), jnp.asarray(labels))))
  # Padding (mask False) is not looked at.
  mask = np.array([True, False, True, True])
  assert float(metrics.auc(scores, labels, mask, xp=np)) == 1.0
