"""f-AnoGAN end to end: both phases on the tiny phantoms config, and a resume of the encoder
phase (the networks are in tests/models, the losses and tasks in tests/train)."""

import json
import os
import shutil

import numpy as np

from tests.helpers import make_config


def test_two_phases_write_gan_and_encoder_results(fanogan_run):
  workdir = fanogan_run
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['model'] == 'fanogan' and summary['n_iterations'] == 2
  for i in (0, 1):
    gan = workdir / 'gan' / f'iter_{i:02d}'
    assert (gan / 'checkpoints' / 'best').is_dir() and (gan / 'checkpoints' / 'latest').is_dir()
    info = json.loads((gan / 'gan.json').read_text())
    assert info['selected_epoch'] in info['select_epochs'] and len(info['swd']) == 2
    assert (gan / 'samples' / 'selected.png').exists()
    m = json.loads((workdir / f'iter_{i:02d}' / 'metrics.json').read_text())
    parts = m['test_score_parts']
    assert len(parts['image']) == len(parts['feature']) == m['n_test']
    np.testing.assert_allclose(
      np.asarray(parts['image']) + np.asarray(parts['feature']), m['test_scores'], rtol=1e-4
    )


def test_rerun_resumes_the_encoder_phase(fanogan_run, tmp_path):
  from uadjax import protocol as protocol_lib

  resumed = tmp_path / 'resumed'
  shutil.copytree(fanogan_run, resumed)
  it1 = resumed / 'iter_01'
  os.remove(it1 / 'metrics.json')
  shutil.rmtree(it1 / 'checkpoints' / 'best')
  shutil.rmtree(it1 / 'checkpoints' / 'latest' / '4')
  os.remove(resumed / 'summary.json')
  gan_before = (resumed / 'gan' / 'iter_01' / 'gan.json').read_text()
  protocol_lib.run(make_config('configs/headct/fanogan.py:tiny,phantoms'), str(resumed))
  before = json.loads((fanogan_run / 'iter_01' / 'metrics.json').read_text())
  after = json.loads((resumed / 'iter_01' / 'metrics.json').read_text())
  assert after['history']['epoch'] == [1, 2, 3, 4]
  np.testing.assert_allclose(after['test_scores'], before['test_scores'], rtol=1e-4, atol=1e-6)
  assert (resumed / 'gan' / 'iter_01' / 'gan.json').read_text() == gan_before


def test_the_report_shows_the_selected_generators_samples(fanogan_run, tmp_path):
  # The GAN writes its grids in gan/iter_XX/samples (uadjax.run.layout); the report once
  # looked in iter_XX/samples and showed none.
  from uadjax.reports import write_report

  assert not (fanogan_run / 'iter_00' / 'samples').exists()
  text = open(write_report(str(fanogan_run), str(tmp_path / 'report'), iteration=0)).read()
  assert '](samples.png)' in text and 'gan/iter_00/samples' in text
  assert (tmp_path / 'report' / 'samples.png').stat().st_size > 500
