"""A family added in one place: its model, its task and its `Family` entry, nothing else.

The protocol, the report and predict run it without an edit (the claim of `uadjax.families`).
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from PIL import Image

from tests.helpers import TINY_CAE, make_config
from uadjax import families, predict
from uadjax import protocol as protocol_lib
from uadjax.families.cae.task import ReconstructionTask
from uadjax.reports import write_report


class ToyAutoencoder(nn.Module):
  """One convolution and a sigmoid: the smallest model with a 'reconstruction'."""

  features: int = 4
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    h = nn.relu(nn.Conv(self.features, (3, 3), dtype=self.dtype)(x))
    return {'reconstruction': nn.sigmoid(nn.Conv(x.shape[-1], (3, 3), dtype=self.dtype)(h))}


def test_a_family_declared_in_the_registry_runs_reports_and_predicts(tmp_path, monkeypatch):
  toy = families.Family('toy', 'Toy AE', ToyAutoencoder, ReconstructionTask)
  monkeypatch.setitem(families.FAMILIES, 'toy', toy)
  config = make_config(TINY_CAE, **{'cv.iterations': '0'})
  config.model_name = 'toy'
  config.model = {'features': 4}
  workdir = tmp_path / 'run'

  summary = protocol_lib.run(config, str(workdir))
  assert summary['model'] == 'toy' and summary['n_iterations'] == 1
  assert 0.0 <= summary['metrics']['auc']['mean'] <= 1.0
  assert '| Toy AE (uadjax) |' in (workdir / 'summary.md').read_text()

  report = write_report(str(workdir))
  text = open(report).read()
  assert text.startswith('# Toy AE on phantoms data')
  # Its maps and reconstructions are drawn like the CAE's (the task reconstructs).
  assert '## Anomaly maps' in text and (workdir / 'report' / 'anomaly_maps.png').is_file()

  images = tmp_path / 'images'
  images.mkdir()
  for k in range(3):
    pixels = (np.random.default_rng(k).uniform(size=(32, 32)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(images / f'{k}.png')
  out = predict.predict(str(workdir), str(images), str(tmp_path / 'pred'), overlays=False)
  assert out['n_images'] == 3
  rows = (tmp_path / 'pred' / 'predictions.csv').read_text().strip().splitlines()
  assert len(rows) == 4  # the header and one row an image
