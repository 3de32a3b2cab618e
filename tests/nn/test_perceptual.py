"""The perceptual (LPIPS) residual: zero for an image with itself, growing with a blur, and a
choice of the reconstruction families' score switches (rescoring and training)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_config
from uadjax.data import phantoms
from uadjax.nn import perceptual
from uadjax.nn import scores as scores_lib


@pytest.fixture(scope='module')
def images():
  x, _, _, _ = phantoms.make_phantoms(3, 1, 64, 0)
  return np.asarray(x, np.float32)


@pytest.mark.parametrize('backbone', ['vgg16', 'alexnet'])
def test_the_distance_of_an_image_with_itself_is_zero(images, backbone):
  maps = perceptual.perceptual_map(perceptual.weights(backbone), images, images, backbone)
  assert maps.shape == images.shape[:3]
  np.testing.assert_allclose(maps, 0.0, atol=1e-6)


def test_the_distance_grows_with_the_sigma_of_a_blur(images):
  weights = perceptual.weights('vgg16')
  distances = []
  for sigma in (0.5, 1.0, 2.0, 4.0):
    blurred = np.asarray(scores_lib.gaussian_blur(images[..., 0], sigma))[..., None]
    scores, _ = scores_lib.image_scores(
      images, blurred, residual='perceptual', perceptual=weights, backbone='vgg16'
    )
    distances.append(np.asarray(scores))
  distances = np.stack(distances)  # (sigmas, images)
  assert np.all(distances > 0)
  assert np.all(np.diff(distances, axis=0) > 0), distances


def test_a_reconstruction_task_gets_the_weights_as_frozen_variables_only_when_asked():
  from uadjax import families

  config = make_config('configs/headct/cae.py:tiny,phantoms')
  assert families.make_task(config).frozen_variables() == {}
  config.task = {'residual': 'perceptual'}
  task = families.make_task(config)
  assert set(task.frozen_variables()) == {'perceptual'}
  config.task.perceptual_backbone = 'resnet'
  with pytest.raises(ValueError, match="task.perceptual_backbone='resnet'"):
    families.make_task(config)


def test_a_run_trained_with_the_perceptual_residual_shows_its_maps(tmp_path):
  # Its scoring program takes the backbone as frozen variables: the TensorBoard images at each
  # 'latest' checkpoint must hand them over as the validation does (they once did not).
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  from uadjax import protocol as protocol_lib

  config = make_config('configs/headct/cae.py:tiny,phantoms', **{'cv.iterations': '0'})
  config.task = {'residual': 'perceptual'}
  summary = protocol_lib.run(config, str(tmp_path / 'run'))
  assert np.isfinite(summary['metrics']['auc']['mean'])
  events = EventAccumulator(str(tmp_path / 'run' / 'tensorboard' / 'iter_00'), {'images': 0})
  events.Reload()
  assert events.Images('images/anomaly_map')
