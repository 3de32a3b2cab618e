"""The phantom segmentation report (uadjax.reports.segmentation) on tiny finished runs."""


def test_report_on_tiny_phantom_runs(tmp_path):
  from configs.headct import cae, ssae
  from uadjax import cv
  from uadjax.reports import segmentation as report

  runs = {}
  for name, module in (('CAE', cae), ('SSAE', ssae)):
    config = module.get_config('tiny,phantoms')
    config.train.epochs = 2
    config.cv.iterations = '0'
    runs[name] = str(tmp_path / name)
    cv.run(config, runs[name])
  out = report.write_segmentation_report(runs, str(tmp_path / 'seg'))
  for name in runs:
    s = out[name]['summary']
    assert 0 <= s['pixel_auroc']['mean'] <= 1 and 0 < s['best_dice']['mean'] <= 1
    assert [r['iteration'] for r in out[name]['iterations']] == [0]
  for f in ('segmentation.md', 'segmentation.json', 'segmentation_scores.png'):
    assert (tmp_path / 'seg' / f).exists()
  assert (tmp_path / 'seg' / 'segmentation_examples.png').stat().st_size > 1000
  assert '| SSAE |' in (tmp_path / 'seg' / 'segmentation.md').read_text()
