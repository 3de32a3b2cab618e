"""A synthetic ten-iteration run, as the cross-validation runner writes it: the figure and
table tests read it."""

import numpy as np
import pytest

from uadjax.evaluation.metrics import classification_metrics, select_threshold, summarize


def _fake_iteration(rng, iteration, epochs=120, val_every=10):
  """A metrics dict shaped like the runner's metrics.json, with random but plausible values."""
  g, b = iteration % 5, iteration // 5
  epoch = list(range(1, epochs + 1))
  loss = 0.05 * np.exp(-np.arange(epochs) / 40) + 0.002 + 0.001 * rng.random(epochs)
  v_epoch = list(range(val_every, epochs + 1, val_every))
  v_auc = np.clip(
    0.6
    + 0.25 * (1 - np.exp(-np.arange(len(v_epoch)) / 4))
    + 0.05 * rng.standard_normal(len(v_epoch)),
    0,
    1,
  )
  selected = v_epoch[int(np.argmax(v_auc))]

  def scores(n_normal, n_abnormal):
    labels = np.r_[np.zeros(n_normal), np.ones(n_abnormal)].astype(int)
    values = np.where(
      labels == 1, rng.normal(0.014, 0.004, labels.size), rng.normal(0.010, 0.003, labels.size)
    )
    return np.abs(values), labels

  val_scores, val_labels = scores(20, 50)
  test_scores, test_labels = scores(20, 50)
  threshold = select_threshold(val_scores, val_labels, 'f1')
  return {
    'iteration': iteration,
    'normal_fold': g,
    'abnormal_half': b,
    'n_train': 60,
    'n_val': 70,
    'n_test': 70,
    'history': {'epoch': epoch, 'train_loss': loss.tolist()},
    'validation': {
      'epoch': v_epoch,
      'auc': v_auc.tolist(),
      'loss': (0.01 + 0.001 * rng.random(len(v_epoch))).tolist(),
    },
    'selection': 'val_auc',
    'selected_epoch': selected,
    'threshold': {'method': 'f1', 'value': threshold},
    'val_scores': val_scores.tolist(),
    'val_labels': val_labels.tolist(),
    'test': classification_metrics(test_scores, test_labels, threshold),
    'test_scores': test_scores.tolist(),
    'test_labels': test_labels.tolist(),
    'test_names': [f'{i:03d}.png' for i in range(test_labels.size)],
  }


@pytest.fixture(scope='module')
def run():
  """Ten synthetic iterations and their summary, as the cross-validation runner writes them."""
  rng = np.random.default_rng(0)
  metrics_list = [_fake_iteration(rng, i) for i in range(10)]
  summary = {
    'model': 'cae',
    'n_iterations': 10,
    'metrics': summarize([m['test'] for m in metrics_list]),
  }
  return metrics_list, summary
