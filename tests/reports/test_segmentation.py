"""The phantom segmentation scores (uadjax.segment) and their report (uadjax.reports.segmentation)
on tiny finished runs."""

import shutil


def test_report_on_tiny_phantom_runs(tiny_run, ssae_run, tmp_path):
  from uadjax import segment
  from uadjax.reports import segmentation as report

  runs = {}
  for name, run in (('CAE', tiny_run), ('SSAE', ssae_run)):
    # The shared runs as one-iteration runs: iteration 0 alone is finished.
    runs[name] = str(tmp_path / name)
    shutil.copytree(run, runs[name], ignore=shutil.ignore_patterns('iter_01', 'latest', 'report'))
  out = report.write_segmentation_report(segment.compare_runs(runs), str(tmp_path / 'seg'))
  for name in runs:
    s = out[name]['summary']
    assert 0 <= s['pixel_auroc']['mean'] <= 1 and 0 < s['best_dice']['mean'] <= 1
    assert [r['iteration'] for r in out[name]['iterations']] == [0]
  for f in ('segmentation.md', 'segmentation.json', 'segmentation_scores.png'):
    assert (tmp_path / 'seg' / f).exists()
  assert (tmp_path / 'seg' / 'segmentation_examples.png').stat().st_size > 1000
  assert '| SSAE |' in (tmp_path / 'seg' / 'segmentation.md').read_text()
