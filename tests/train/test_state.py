"""The training state: the learning-rate schedule."""

from __future__ import annotations

import ml_collections
import pytest

from uadjax.train import state as state_lib


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
