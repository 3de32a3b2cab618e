"""DAGMM end to end: the protocol sequential and fold-parallel, with a fitted mixture in the
selected checkpoint (the network and the energy are in tests/models, the task in tests/train)."""

import numpy as np
import pytest

from tests.helpers import make_config
from uadjax import protocol as protocol_lib
from uadjax.run import checkpoint


def _check_run(workdir, summary, z_dim):
  assert summary['model'] == 'dagmm' and summary['n_iterations'] == 2
  text = (workdir / 'summary.md').read_text()
  assert '| DAGMM (uadjax) |' in text
  best = checkpoint.restore(str(workdir / 'iter_00' / 'checkpoints' / 'best'))
  mixture = best['batch_stats']['mixture']
  # The selected variables carry a fitted mixture, not the placeholder (phi = 1/K, sigma = I).
  assert not np.allclose(np.asarray(mixture['sigma'][0]), np.eye(z_dim))
  assert np.isclose(float(np.sum(mixture['phi'])), 1.0, atol=1e-4)


@pytest.mark.parametrize(
  'parallel, features',
  [(False, 'brain'), (True, 'study')],
  ids=['sequential_brain_features', 'fold_parallel'],
)
def test_tiny_protocol_end_to_end(tmp_path, parallel, features):
  workdir = tmp_path / 'dagmm'
  config = make_config(
    'configs/headct/dagmm.py:tiny,phantoms',
    **{'cv.parallel': parallel, 'model.recon_features': features},
  )
  # z: the code of 3 and the reconstruction features (3 inside the brain, else 2).
  _check_run(workdir, protocol_lib.run(config, str(workdir)), 6 if features == 'brain' else 5)
