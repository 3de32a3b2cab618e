r"""Pixel-level lesion segmentation of finished phantom runs, side by side.

  python -m experiments.cross_validate --config=configs/headct/cae.py:quick,phantoms \
      --workdir=runs/cae_phantoms
  python -m experiments.cross_validate --config=configs/headct/ssae.py:quick,phantoms \
      --workdir=runs/ssae_phantoms
  python -m experiments.segment_phantoms --run=CAE=runs/cae_phantoms \
      --run=SSAE=runs/ssae_phantoms --outdir=runs/segmentation

Writes segmentation.md (pixel AUROC and best Dice, mean ± std over iterations), .json and two
figures (scores, example maps) to --outdir. A run whose config.json fails the config check, or an
--outdir that cannot be written, exits with status 2 and one message.
"""

from absl import app, flags, logging

from uadjax import runtime, segment
from uadjax.reports import segmentation
from uadjax.run import storage

_RUNS = flags.DEFINE_multi_string('run', None, 'LABEL=WORKDIR of a finished phantom run.')
_OUTDIR = flags.DEFINE_string('outdir', None, 'Folder for the table and figures.')
flags.mark_flags_as_required(['run', 'outdir'])


def main(argv):
  del argv
  runtime.setup()
  runs = dict(r.split('=', 1) for r in _RUNS.value)
  with (
    runtime.user_errors(),
    storage.reported(_OUTDIR.value, 'writing the segmentation report', storage.REWRITES),
  ):
    segmentation.write_segmentation_report(segment.compare_runs(runs), _OUTDIR.value)
  logging.info('Results in %s', _OUTDIR.value)
  with open(f'{_OUTDIR.value}/segmentation.md') as f:
    print(f.read())


if __name__ == '__main__':
  app.run(main)
