r"""Writes the report of a run (figures and report.md in RUN/report/) from its saved files.

  python -m experiments.report --workdir=runs/cae_quick
  python -m experiments.report --workdir=runs/cae_quick --iteration=4 --out=/tmp/report

Nothing is retrained: metrics.json gives the curves and scores, the best checkpoint of one
iteration (default: the one with the median test AUC) the reconstructions and anomaly maps.
"""

from absl import app, flags, logging

from uadjax import runtime
from uadjax.reports import write_report
from uadjax.run import storage

_WORKDIR = flags.DEFINE_string('workdir', None, 'The run folder.')
_OUT = flags.DEFINE_string('out', None, 'Output folder (default: WORKDIR/report).')
_ITERATION = flags.DEFINE_integer(
  'iteration', None, 'Iteration shown in the image figures (default: median test AUC).'
)
flags.mark_flag_as_required('workdir')


def main(argv):
  del argv
  runtime.setup()
  out = _OUT.value or _WORKDIR.value
  with runtime.user_errors(), storage.reported(out, 'writing the report', storage.REWRITES):
    path = write_report(_WORKDIR.value, _OUT.value, _ITERATION.value)
  logging.info('Report written to %s', path)
  print(path)


if __name__ == '__main__':
  app.run(main)
