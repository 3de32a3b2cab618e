r"""Fuses the scores of finished runs made on the same data and splits into one run folder.

  python -m experiments.ensemble --run=runs/cae_cpu --run=runs/intensity --workdir=runs/ens
  python -m experiments.ensemble --run=A --run=B --run=C --workdir=OUT --step=0.25

Reads each run's saved validation and test scores (nothing is scored again: seconds), refuses
runs of other data or splits, standardises each run's scores on each iteration's validation
normals, chooses the rule (the mean, or weights from a grid of --step) by mean validation AUC,
and the threshold by validation F1. OUT is a run folder that experiments.report, compare and
predict read like any other; OUT/ensemble.md (printed) sets the runs beside the fused one. See
uadjax/ensemble.py.
"""

from absl import app, flags, logging

from uadjax import ensemble, runtime

_RUNS = flags.DEFINE_multi_string('run', None, 'A finished run folder; two or more.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'The fused run folder.')
_STEP = flags.DEFINE_float('step', 0.25, 'Grid step of the weights (1/step a whole number).')
_THRESHOLD = flags.DEFINE_enum(
  'threshold', 'f1', list(ensemble.THRESHOLDS), 'Threshold on the fused validation scores.'
)
flags.mark_flags_as_required(['run', 'workdir'])


def main(argv):
  del argv
  runtime.setup()
  with runtime.user_errors():
    result = ensemble.fuse(_RUNS.value, _WORKDIR.value, _STEP.value, _THRESHOLD.value)
  logging.info('Fused run in %s (%.2f s)', _WORKDIR.value, result['seconds'])
  print(ensemble.markdown(result))


if __name__ == '__main__':
  app.run(main)
