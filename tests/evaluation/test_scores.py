"""The quality levers: score variants against hand-computed values, the head and brain masks
of a phantom, the learning-rate schedule, and the intensity baseline through the protocol,
the report and predict."""

from __future__ import annotations

import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from uadjax import cv, io
from uadjax.data import phantoms
from uadjax.evaluation import masks, scores
from uadjax.train import state as state_lib


def test_mean_and_topk_of_a_fixed_map_equal_the_hand_computed_values():
  # 2x5 map: values 0..9; the mask keeps the last 6 (4..9).
  maps = jnp.arange(10, dtype=jnp.float32).reshape(1, 2, 5)
  mask = jnp.array([[[False, False, False, False, True], [True, True, True, True, True]]])
  assert float(scores.reduce_map(maps, None, 'mean')[0]) == pytest.approx(4.5)
  assert float(scores.reduce_map(maps, mask, 'mean')[0]) == pytest.approx(
    (4 + 5 + 6 + 7 + 8 + 9) / 6
  )
  # top 20 % of 10 pixels = the 2 largest: (9 + 8) / 2; of the 6 masked: ceil(1.2) = 2 as well.
  assert float(scores.reduce_map(maps, None, 'topk', 0.2)[0]) == pytest.approx(8.5)
  # top 50 % of the 6 masked pixels: 9, 8, 7.
  assert float(scores.reduce_map(maps, mask, 'topk', 0.5)[0]) == pytest.approx(8.0)
  # At least one pixel, whatever the fraction.
  assert float(scores.reduce_map(maps, None, 'topk', 1e-6)[0]) == pytest.approx(9.0)


def test_ssim_residual_is_zero_for_a_perfect_reconstruction_and_positive_otherwise():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(2, 16, 16, 1)), jnp.float32)
  same = scores.ssim_map(x, x)
  assert float(jnp.max(jnp.abs(same))) < 1e-5
  other = scores.ssim_map(x, jnp.clip(x + 0.2 * jnp.asarray(rng.normal(size=x.shape)), 0, 1))
  assert float(jnp.mean(other)) > 0.05


def test_blur_keeps_a_constant_map_and_spreads_a_spike():
  flat = jnp.full((1, 9, 9), 3.0)
  np.testing.assert_allclose(scores.gaussian_blur(flat, 1.0), flat, rtol=1e-5)
  spike = jnp.zeros((1, 9, 9)).at[0, 4, 4].set(1.0)
  blurred = scores.gaussian_blur(spike, 1.0)
  assert float(jnp.sum(blurred)) == pytest.approx(1.0, rel=1e-4)
  assert float(blurred[0, 4, 4]) < 0.2 and float(blurred[0, 4, 5]) > 0.05


def test_the_head_mask_of_a_phantom_covers_its_skull_and_brain_and_not_the_background():
  images, _, _, _ = phantoms.make_phantoms(3, 3, 64, 0)
  x = images[..., 0]
  head = np.asarray(masks.head_mask(jnp.asarray(images)))
  brain = np.asarray(masks.brain_mask(jnp.asarray(images)))
  for k in range(len(x)):
    tissue = x[k] > 0.3  # skull (brightest) and brain; the background is noise near 0
    assert head[k][tissue].mean() > 0.99
    # The background: every pixel of the border and its corners stay out.
    assert not head[k][0].any() and not head[k][-1].any()
    assert not head[k][:, 0].any() and not head[k][:, -1].any()
    assert head[k].mean() < 0.7
    # The brain mask lies inside the head and leaves out the skull ring at the edge.
    assert not (brain[k] & ~head[k]).any()
    skull = head[k] & ~masks.erode(jnp.asarray(head[k][None]), 1)[0]
    assert not (brain[k] & np.asarray(skull)).any()


def test_the_largest_component_drops_specks_and_fill_holes_closes_the_ventricles():
  mask = np.zeros((1, 20, 20), bool)
  mask[0, 3:17, 3:17] = True
  mask[0, 8:12, 8:12] = False  # a hole
  mask[0, 0, 19] = True  # a speck
  largest = np.asarray(masks.largest_component(jnp.asarray(mask)))
  assert not largest[0, 0, 19] and largest[0, 3, 3]
  filled = np.asarray(masks.fill_holes(jnp.asarray(largest)))
  assert filled[0, 10, 10] and filled[0, 3:17, 3:17].all() and not filled[0, 0, 0]


def test_the_cosine_schedule_warms_up_and_decays():
  config = ml_collections.ConfigDict(
    dict(name='adam', learning_rate=1e-3, b1=0.9, b2=0.999, schedule='cosine', warmup_epochs=2)
  )
  lr = state_lib.learning_rate(config, steps_per_epoch=5, epochs=10)
  assert float(lr(0)) == pytest.approx(0.0)
  assert float(lr(10)) == pytest.approx(1e-3)  # end of the warm-up: 2 epochs x 5 steps
  assert float(lr(50)) == pytest.approx(0.0, abs=1e-9)
  assert 0 < float(lr(30)) < 1e-3
  config.schedule = 'constant'
  assert state_lib.learning_rate(config, 5, 10) == 1e-3


def test_score_switches_run_through_the_protocol(tmp_path):
  from tests.helpers import TINY_CAE, make_config

  config = make_config(
    TINY_CAE,
    **{'task': ml_collections.ConfigDict(dict(mask='brain', reduction='topk', topk=0.1, blur=1.0))},
  )
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_epochs = 1
  config.optimizer.weight_decay = 1e-4
  summary = cv.run(config, str(tmp_path / 'run'))
  assert 0.0 <= summary['metrics']['auc']['mean'] <= 1.0
  metrics = io.read_json(tmp_path / 'run' / 'iter_00' / 'metrics.json')
  assert all(np.isfinite(metrics['test_scores']))


def test_the_intensity_baseline_runs_through_the_protocol_the_report_and_predict(tmp_path):
  from configs.headct import intensity
  from uadjax import predict
  from uadjax.reports import write_report

  config = intensity.get_config('tiny,phantoms')
  workdir = tmp_path / 'run'
  summary = cv.run(config, str(workdir))
  # Phantom lesions are brighter than the brain: a band above the brain's intensities finds
  # them.
  assert summary['metrics']['auc']['mean'] > 0.7
  metrics = io.read_json(workdir / 'iter_00' / 'metrics.json')
  assert 1 <= metrics['selected_epoch'] <= len(config.task.percentiles)
  assert os.path.exists(write_report(str(workdir)))
  folder = tmp_path / 'images'
  folder.mkdir()
  images, labels, _, _ = phantoms.make_phantoms(1, 1, 32, 5)
  for k, x in enumerate(images):
    Image.fromarray((x[..., 0] * 255).astype(np.uint8)).save(folder / f'{k}.png')
  result = predict.predict(str(workdir), str(folder), str(tmp_path / 'out'))
  assert result['n_images'] == 2 and result['n_errors'] == 0


def test_rescore_gives_the_runs_own_validation_auc_for_the_study_score(tiny_run):
  from uadjax import rescore

  results = rescore.rescore(
    str(tiny_run), {'study': {}, 'brain_top5': {'mask': 'brain', 'reduction': 'topk'}}
  )
  for name in ('study', 'brain_top5'):
    assert results[name]['iterations'] == [0, 1]
  for k, i in enumerate(results['study']['iterations']):
    m = io.read_json(tiny_run / f'iter_{i:02d}' / 'metrics.json')
    at_selection = m['validation']['auc'][m['validation']['epoch'].index(m['selected_epoch'])]
    assert results['study']['val_auc'][k] == pytest.approx(at_selection, abs=1e-6)
    assert results['study']['test_auc'][k] == pytest.approx(m['test']['auc'], abs=1e-6)
  assert '| brain_top5 |' in rescore.markdown(results)
