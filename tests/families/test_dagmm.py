"""DAGMM end to end: the protocol sequential and fold-parallel, with a fitted mixture in the
selected checkpoint (the network and the energy are in tests/models, the task in tests/train)."""

import numpy as np
import pytest

from tests.helpers import make_config
from uadjax import checkpoint
from uadjax import protocol as protocol_lib


def _check_run(workdir, summary):
  assert summary['model'] == 'dagmm' and summary['n_iterations'] == 2
  text = (workdir / 'summary.md').read_text()
  assert '| DAGMM (uadjax) |' in text
  best = checkpoint.restore(str(workdir / 'iter_00' / 'checkpoints' / 'best'))
  mixture = best['batch_stats']['mixture']
  # The selected variables carry a fitted mixture, not the placeholder (phi = 1/K, sigma = I).
  assert not np.allclose(np.asarray(mixture['sigma'][0]), np.eye(5))
  assert np.isclose(float(np.sum(mixture['phi'])), 1.0, atol=1e-4)


@pytest.mark.parametrize('parallel', [False, True], ids=['sequential', 'fold_parallel'])
def test_tiny_protocol_end_to_end(tmp_path, parallel):
  workdir = tmp_path / 'dagmm'
  config = make_config('configs/headct/dagmm.py:tiny,phantoms', **{'cv.parallel': parallel})
  _check_run(workdir, protocol_lib.run(config, str(workdir)))
