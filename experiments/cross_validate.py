r"""Runs (or resumes) the study's 2x5 cross-validation of one model.

  python -m experiments.cross_validate --config=configs/headct/cae.py:quick --workdir=runs/cae
  python -m experiments.cross_validate --config=configs/headct/cae.py --workdir=runs/cae \
      --config.data.root=/path/to/head_ct --config.train.dtype=bfloat16

Running the same command again resumes an interrupted run. At the end the report (figures and
report.md in WORKDIR/report, see experiments.report) is written, unless --noreport (the default
follows config.cv.figures, which the :tiny variant turns off). On several hosts, start the same
command on each with --distributed (JAX's own multi-host runtime: jax.distributed.initialize
reads the coordinator address, process count and id from the cluster environment or its flags).
"""

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from uadjax import cv, runtime
from uadjax.reports import write_report

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Config file (see configs/).', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for checkpoints and results.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize().')
_REPORT = flags.DEFINE_bool(
  'report', None, 'Write WORKDIR/report at the end (default: config.cv.figures).'
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  runtime.setup(distributed=_DISTRIBUTED.value)
  with runtime.user_errors():
    summary = cv.run(_CONFIG.value, _WORKDIR.value)
  logging.info('Results in %s', _WORKDIR.value)
  report = _CONFIG.value.cv.figures if _REPORT.value is None else _REPORT.value
  if report and jax.process_index() == 0:
    logging.info('Report: %s', write_report(_WORKDIR.value))
  print(cv.format_summary(summary, _WORKDIR.value))


if __name__ == '__main__':
  app.run(main)
