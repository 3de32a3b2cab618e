"""tools/startup_bench.py: one cold round on the phantoms, end to end, and its clock."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO, env_without_gpu

BENCH = REPO / 'tools' / 'startup_bench.py'


def test_one_cold_round_clocks_the_training_call_and_prints_the_table():
  # The clock hooks the engine's training function by name (`train_epochs` here, one iteration
  # at a time): a renamed function would leave the 'training' column empty ('-').
  out = subprocess.run(
    [
      sys.executable,
      str(BENCH),
      '--runs=1',
      '--cache=cold',
      '--config=configs/headct/cae.py:tiny,phantoms',
      '--args=--config.cv.iterations=0 --config.cv.parallel=False',
      '--data=',
    ],
    cwd=REPO,
    env=env_without_gpu(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stdout + out.stderr
  rows = [line for line in out.stdout.splitlines() if line.startswith(f'| {REPO} | cold |')]
  assert len(rows) == 1, out.stdout
  cells = [c.strip() for c in rows[0].strip('|').split('|')]
  wall, training, first_line = (float(c.split()[0]) for c in cells[3:6])
  assert 0 < training < first_line < wall, rows[0]
  assert cells[6] == '1.00' and cells[7] == '-', rows[0]  # its own ratio; no peer
