"""The report of a run: written by the cross-validation entry point, every figure embedded,
the GAN parts drawn when a run has them, and the progress log beside it."""

import csv
import json
import os
import re
import shutil

import numpy as np
from PIL import Image

from uadjax import inference
from uadjax.reports import figures, report

FIGURES = (
  'training_curves.png',
  'threshold_selection.png',
  'score_histograms.png',
  'examples.png',
  'anomaly_maps.png',
  'extremes.png',
)


def _assert_png(path):
  with Image.open(path) as image:
    assert image.format == 'PNG' and image.size[0] > 300 and image.size[1] > 150


def test_cross_validate_writes_the_report(tiny_run):
  folder = tiny_run / 'report'
  text = (folder / 'report.md').read_text()
  embedded = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
  assert embedded == list(FIGURES)
  for name in FIGURES:
    _assert_png(folder / name)
  assert '| CAE (uadjax) |' in text and '| CAE (study) |' not in text  # phantoms: no study row
  # Phantoms know their lesions: the maps are scored against them.
  assert 'Pixel-level AUROC' in text


def test_progress_log_has_a_row_per_iteration_and_call(tiny_run):
  with open(tiny_run / 'progress.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['iteration'], r['epoch']) for r in rows] == [
    ('0', '2'),
    ('1', '2'),
    ('0', '4'),
    ('1', '4'),
  ]
  assert all(float(r['images_per_s']) > 0 and 0 <= float(r['val_auc']) <= 1 for r in rows)


def test_gan_parts_and_samples_are_drawn_when_the_run_has_them(tiny_run, tmp_path):
  run = tmp_path / 'gan'
  shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns('report', 'latest'))
  path = run / 'iter_01' / 'metrics.json'
  metrics = json.loads(path.read_text())
  n = len(metrics['test_scores'])
  metrics['test_score_parts'] = {
    'image': [0.5 * s for s in metrics['test_scores']],
    'feature': [0.1] * n,
  }
  path.write_text(json.dumps(metrics))
  (run / 'iter_01' / 'samples').mkdir()
  for k in range(3):
    Image.fromarray(np.full((16, 16), 40 * k, np.uint8)).save(
      run / 'iter_01' / 'samples' / f'{k}.png'
    )
  text = open(report.write_report(str(run), str(tmp_path / 'out'), iteration=1)).read()
  for name in ('score_parts.png', 'samples.png'):
    assert f']({name})' in text
    _assert_png(tmp_path / 'out' / name)
  assert 'Iteration 1 (g/b 0/1)' in text


def test_representative_iteration_is_the_median():
  aucs = [0.9, 0.5, 0.7, float('nan'), 0.6, 0.66]
  ms = [{'iteration': i, 'test': {'auc': a}} for i, a in enumerate(aucs)]
  assert report.representative_iteration(ms)['iteration'] == 5  # median of the finite: 0.66


def test_the_report_copies_the_run_figures_drawn_from_its_metrics(tiny_run, tmp_path, monkeypatch):
  run = tmp_path / 'run'
  shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns('report', 'latest', 'figures'))
  metrics_list = list(inference.finished_iterations(str(run)).values())
  paths = [str(run / f'iter_{int(m["iteration"]):02d}' / 'metrics.json') for m in metrics_list]
  figures.write_run_figures(metrics_list, run / 'figures', figures.drawn_from(paths))
  # Marked, so that a copy tells itself apart from a drawing of the same data.
  for name in figures.RUN_FIGURES:
    (run / 'figures' / name).write_bytes(b'the run figure ' + name.encode())

  def report_of(name):
    report.write_report(str(run), str(tmp_path / name))
    return {n: (tmp_path / name / n).read_bytes() for n in figures.RUN_FIGURES}

  copied = report_of('same')
  assert copied == {n: b'the run figure ' + n.encode() for n in figures.RUN_FIGURES}
  drawn_from = run / 'figures' / figures.DRAWN_FROM
  # Drawn from iteration 0 alone (a later run of one iteration in this workdir): drawn.
  drawn_from.write_text(json.dumps(figures.drawn_from(paths[:1])))
  assert all(v.startswith(b'\x89PNG') for v in report_of('other').values())
  # The right iterations, but a metrics.json since rewritten, then dated back: drawn.
  drawn_from.write_text(json.dumps(figures.drawn_from(paths)))
  assert report_of('again') == copied
  metrics = run / 'iter_01' / 'metrics.json'
  before = os.stat(metrics).st_mtime_ns
  metrics.write_text(json.dumps(json.loads(metrics.read_text()), indent=3))
  os.utime(metrics, ns=(before, before))
  assert all(v.startswith(b'\x89PNG') for v in report_of('rewritten').values())
  # Other drawing code (here: another matplotlib) gives another source.
  monkeypatch.setattr('matplotlib.__version__', '0.0')
  assert figures.drawn_from(paths)['code'] != json.loads(drawn_from.read_text())['code']
