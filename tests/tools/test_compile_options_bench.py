"""tools/compile_options_bench.py: one round of the tiny CAE's programs, and its table."""

from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import REPO


def _bench():
  spec = importlib.util.spec_from_file_location(
    'compile_options_bench', REPO / 'tools' / 'compile_options_bench.py'
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_one_round_compiles_each_program_both_ways_and_finds_the_same_bits(capsys):
  _bench().main(
    ['--configs', 'configs/headct/cae.py:tiny', '--programs=scoring,init', '--rounds=1',
     '--calls=1', '--images=2']
  )  # fmt: skip
  rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| configs')]
  assert [row.split(' | ')[1:3] for row in rows] == [
    ['scoring (-O1)', 'on'],
    ['scoring (-O1)', 'off'],
    ['init (-O0)', 'on'],
    ['init (-O0)', 'off'],
  ]
  assert all(row.endswith('| yes |') for row in rows)
  assert rows[0].split(' | ')[4] != '-' and rows[2].split(' | ')[4] == '-'  # init is not run


def test_an_unknown_program_is_refused_by_name():
  with pytest.raises(SystemExit):
    _bench().main(['--programs=scoring,eval'])
