"""Comparing runs: the summary table beside the study's rows, the CSV, the ROC figure."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, env_without_gpu
from uadjax.reports import compare
from uadjax.run import fingerprint


def test_compare_entry_point(tiny_run, tmp_path):
  # A second "run": the same results under another name, without checkpoints (compare reads
  # metrics only).
  other = tmp_path / 'runs' / 'other'
  shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns('checkpoints', 'report'))
  # ... claimed to be of the study's head CT (its source and data fingerprint): the study's CAE
  # row is set beside it (not beside the phantom run alone).
  config = json.loads((other / 'config.json').read_text())
  config['data']['source'] = 'folder_csv'
  config['data_fingerprint']['sha256'] = fingerprint.STUDY_HEAD_CT_SHA256
  (other / 'config.json').write_text(json.dumps(config))
  out = tmp_path / 'cmp'
  cmd = [sys.executable, '-m', 'experiments.compare', str(tiny_run), str(other), f'--out={out}']
  done = subprocess.run(
    cmd, cwd=REPO, env=env_without_gpu(), capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert '| cae | CAE | 2 |' in done.stdout and '| other | CAE | 2 |' in done.stdout
  assert (
    '| study | CAE | 10 | 0.78 ± 0.09 | 0.74 ± 0.04 | 0.93 ± 0.05 | 0.77 ± 0.04 | 0.84 ± 0.02 |'
    in (done.stdout)
  )
  assert done.stdout.count('| study |') == 1
  with open(out / 'comparison.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['run'] for r in rows] == ['cae', 'other', 'study']
  aucs = [m['auc'] for m in compare.run_row(str(tiny_run))['iterations'] for m in [m['test']]]
  assert float(rows[0]['auc_mean']) == pytest.approx(np.mean(aucs))
  assert float(rows[0]['auc_std']) == pytest.approx(np.std(aucs))
  assert (out / 'roc.png').stat().st_size > 10_000 and (out / 'comparison.md').exists()


def test_mean_roc_of_perfect_and_chance_iterations():
  perfect = {'test_labels': [0, 0, 1, 1], 'test_scores': [0.1, 0.2, 0.8, 0.9]}
  inverted = {'test_labels': [0, 0, 1, 1], 'test_scores': [0.9, 0.8, 0.2, 0.1]}
  fpr, tpr, std = compare.mean_roc([perfect, inverted], grid=5)
  np.testing.assert_allclose(fpr, [0, 0.25, 0.5, 0.75, 1])
  # Perfect: tpr 1 from fpr 0+; inverted: tpr 0 until fpr 1. Their mean is 0.5 in between.
  np.testing.assert_allclose(tpr[1:-1], 0.5)
  np.testing.assert_allclose(std[1:-1], 0.5)


def test_compare_needs_runs(tmp_path):
  with pytest.raises(ValueError, match='No runs'):
    compare.compare_runs([], str(tmp_path))


def test_a_one_iteration_run_gets_plain_values(tiny_run, tmp_path):
  # One finished iteration (as a fundus hold-out run): '± 0.00' would claim an unmeasured spread.
  single = tmp_path / 'single'
  shutil.copytree(tiny_run, single, ignore=shutil.ignore_patterns('checkpoints', 'report'))
  shutil.rmtree(single / 'iter_01')
  compare.compare_runs([str(tiny_run), str(single)], str(tmp_path / 'cmp'))
  text = (tmp_path / 'cmp' / 'comparison.md').read_text()
  row = next(line for line in text.splitlines() if line.startswith('| single |'))
  auc = json.loads((single / 'iter_00' / 'metrics.json').read_text())['test']['auc']
  assert row.startswith(f'| single | CAE | 1 | {auc:.2f} |') and '±' not in row
  assert '±' in next(line for line in text.splitlines() if line.startswith('| cae |'))
