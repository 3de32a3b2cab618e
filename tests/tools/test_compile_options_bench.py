"""tools/compile_options_bench.py: one round of the tiny CAE's programs, and its table (run as
a script, as the tool must be: its switch of JAX's persistent cache holds only before the
process's first compile)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO, env_without_gpu

BENCH = REPO / 'tools' / 'compile_options_bench.py'


def _bench(*flags):
  return subprocess.run(
    [sys.executable, str(BENCH), *flags],
    cwd=REPO,
    env=env_without_gpu(),
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_one_round_compiles_each_program_both_ways_and_finds_the_same_bits():
  done = _bench(
    '--configs', 'configs/headct/cae.py:tiny', '--programs=scoring,init', '--rounds=1',
    '--calls=1', '--images=2',
  )  # fmt: skip
  assert done.returncode == 0, done.stderr[-2000:]
  rows = [line for line in done.stdout.splitlines() if line.startswith('| configs')]
  assert [row.split(' | ')[1:3] for row in rows] == [
    ['scoring (-O1)', 'on'],
    ['scoring (-O1)', 'off'],
    ['init (-O0)', 'on'],
    ['init (-O0)', 'off'],
  ]
  assert all(row.endswith('| yes |') for row in rows)
  assert rows[0].split(' | ')[4] != '-' and rows[2].split(' | ')[4] == '-'  # init is not timed


def test_an_unknown_program_is_refused_by_name():
  done = _bench('--programs=scoring,eval')
  assert done.returncode != 0 and "unknown ['eval']" in done.stderr
