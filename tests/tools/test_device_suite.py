"""tools/device_suite.py: the smoke run end to end on the CPU, and its pure helpers.

The smoke run leaves out the SSAE and f-AnoGAN protocol stages (by flag: they would double the
test's time; their command differs from the CAE's only in its config) and gives the first stage
a 1-second guard, which it cannot meet (importing JAX alone takes longer): the stage must be
recorded as timed out and every later stage must still run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, env_without_gpu, shared_dir

SUITE = REPO / 'tools' / 'device_suite.py'
STATUSES = {'ok', 'skipped', 'failed', 'timeout'}


def _suite_module():
  """tools/device_suite.py as a module (tools/ is no package)."""
  if 'device_suite' not in sys.modules:
    spec = importlib.util.spec_from_file_location('device_suite', SUITE)
    module = importlib.util.module_from_spec(spec)
    sys.modules['device_suite'] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
  return sys.modules['device_suite']


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
  """One smoke run, shared by the xdist workers: (its suite.json, its output folder)."""

  def build(root):
    cmd = [
      sys.executable,
      str(SUITE),
      '--smoke',
      '--skip=protocol_ssae,protocol_fanogan',
      '--budget=env=1',
      f'--out={root / "out"}',
      f'--work={root / "work"}',
    ]
    done = subprocess.run(
      cmd, cwd=REPO, env=env_without_gpu(), capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

  out = shared_dir(tmp_path_factory, 'device_suite', build) / 'out'
  return json.loads((out / 'suite.json').read_text()), out


def test_every_stage_has_figures_or_a_reason(smoke):
  results, _ = smoke
  suite = _suite_module()
  assert set(results['stages']) == set(suite.STAGES)
  for name, entry in results['stages'].items():
    assert entry['status'] in STATUSES, name
    if entry['status'] == 'ok':
      assert entry['rows'] or entry['info'] or entry.get('metrics'), name
    else:
      assert entry['reason'], name


def test_a_stage_past_its_guard_is_recorded_and_the_next_ones_run(smoke):
  stages = smoke[0]['stages']
  assert stages['env']['status'] == 'timeout'
  assert stages['env']['guard_s'] == 1
  assert stages['env']['wall_s'] < 15  # killed: the guard, then at most the grace periods
  assert stages['modes']['status'] == 'ok'
  assert stages['protocol_cae']['status'] == 'ok'


def test_throughput_figures(smoke):
  stages = smoke[0]['stages']
  (mode,) = stages['modes']['rows']
  assert mode['mode'] == 'device_epochs' and mode['train_images_per_s'] > 0
  assert mode['compile_s'] >= 0
  steps = stages['steps']['rows']
  assert [r['impl'] for r in steps] == ['plain', 'fast']  # both forms of the whole model
  for step in steps:
    assert step['family'] == 'densenet' and step['finite'] and step['train_images_per_s'] > 0
  impls = {r['impl'] for r in stages['layers']['rows'] if 'forward_ms' in r}
  assert impls == {'plain', 'fast'}


def test_host_loop_without_albumentations_is_skipped_with_the_reason(tmp_path, monkeypatch):
  """Where albumentations cannot travel, the host-loop rows say so and the stage goes on (the
  import fails at the first augmented batch, before anything compiles)."""
  suite = _suite_module()
  monkeypatch.setitem(sys.modules, 'albumentations', None)  # import raises ImportError
  monkeypatch.setattr(suite, 'SMOKE_MODE_ITEMS', (('cae', 'host_loop', 'float32'),))
  records = suite.Records(str(tmp_path / 'modes.jsonl'))
  suite.stage_modes(records, argparse.Namespace(smoke=True, epochs=0))
  entry = suite.collect('modes', suite.read_records(records.path), 'done', 0, '')
  assert entry['status'] == 'ok'
  (row,) = entry['rows']
  assert 'albumentations' in row['skipped'] and 'train_images_per_s' not in row


def test_torch_stage_runs_or_says_why(smoke):
  torch = smoke[0]['stages']['torch']
  if importlib.util.find_spec('torch') is None:
    assert torch['status'] == 'skipped' and 'torch' in torch['reason']
  else:
    assert torch['status'] == 'ok' and torch['rows']


def test_protocol_stage_summary(smoke):
  stages = smoke[0]['stages']
  cae = stages['protocol_cae']
  assert 0.0 <= cae['metrics']['auc']['mean'] <= 1.0
  assert cae['train_progress']['epoch'] == cae['train_progress']['epochs']
  assert ':tiny,phantoms' in cae['command']
  for name in ('protocol_ssae', 'protocol_fanogan'):
    assert stages[name] == {'status': 'skipped', 'reason': 'skipped by --skip'}


def test_outputs_come_back_from_the_device(smoke):
  _, out = smoke
  names = sorted(p.name for p in out.iterdir())
  assert len(names) <= 8  # the device tool brings back at most 8 files
  assert {'suite.json', 'suite.md', 'suite.log', 'summaries.md', 'progress.csv'} <= set(names)
  table = (out / 'suite.md').read_text()
  assert '## Stages' in table and '| env | timeout |' in table
  assert 'CAE (uadjax)' in (out / 'summaries.md').read_text()
  assert '===== modes =====' in (out / 'suite.log').read_text()


def test_stage_selection_and_budgets():
  suite = _suite_module()
  chosen, left_out = suite.select_stages('', 'torch,protocol')
  assert chosen == ['env', 'modes', 'steps', 'layers']
  assert left_out['protocol_fanogan'] == 'skipped by --skip'
  chosen, left_out = suite.select_stages('throughput', '')
  assert chosen == ['modes', 'steps', 'layers'] and left_out['env'] == 'not in --only'
  assert suite.parse_budgets(['modes=12,torch=3', 'env=1']) == {
    'modes': 12.0,
    'torch': 3.0,
    'env': 1.0,
  }
  with pytest.raises(SystemExit):
    suite.select_stages('', 'nonsense')
  assert sum(suite.BUDGETS.values()) <= 520  # with the wheel install, under 9 minutes
  # A timed-out throughput stage lists what it did not reach, by these labels.
  for family, mode, dtype in suite.MODE_ITEMS:
    row = {'family': family, 'mode': mode, 'dtype': dtype}
    assert suite.item_label(row) in suite.planned('modes', smoke=False)
  for family, dtype in suite.STEP_ITEMS:
    assert suite.item_label({'family': family, 'dtype': dtype}) in suite.planned('steps', False)


def test_ratios_and_markdown_of_a_full_run():
  """The tables of a (made-up) full run: ratios, f-AnoGAN's GAN selection, partial progress."""
  suite = _suite_module()
  stages = {s: {'status': 'skipped', 'reason': 'r'} for s in suite.STAGES}
  stages['modes'] = {
    'status': 'ok',
    'rows': [
      {'family': 'cae', 'mode': 'device_epochs', 'dtype': 'bfloat16', 'train_images_per_s': 900},
      {'family': 'cae', 'mode': 'host_loop', 'dtype': 'float32', 'skipped': 'no albumentations'},
    ],
  }
  stages['torch'] = {
    'status': 'ok',
    'rows': [
      {'way': 'fast_eager', 'way_group': 'fast', 'train_images_per_s': 300},
      {'way': 'fast_compiled', 'way_group': 'fast', 'error': 'RuntimeError: x'},
    ],
  }
  stages['steps'] = {'status': 'timeout', 'reason': 'guard', 'rows': [], 'not_reached': ['cae x']}
  stages['protocol_fanogan'] = {
    'status': 'timeout',
    'reason': 'stopped at its guard',
    'wall_s': 30,
    'gan_progress': {'epoch': 300, 'epochs': 5000, 'images_per_s': 1200.0},
  }
  ratios = suite.torch_ratios(stages)
  assert ratios == [
    {
      'uadjax': 'device_epochs bfloat16',
      'torch': 'fast',
      'uadjax_images_per_s': 900,
      'torch_images_per_s': 300,
      'ratio': 3.0,
    }
  ]
  results = {
    'suite': {'smoke': False, 'started': 'now'},
    'stages': stages,
    'ratios': ratios,
  }
  table = suite.markdown(results)
  assert '| device_epochs bfloat16 | fast | 900 | 300 | 3.0 |' in table
  assert 'skipped: no albumentations' in table
  assert '| fanogan | timeout | 30 | 300/5000 | 1200.0 |' in table
  assert 'guard; not reached: cae x' in table
