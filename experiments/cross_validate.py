r"""Runs (or resumes) the study's 2x5 cross-validation of one model.

  python -m experiments.cross_validate --config=configs/headct/cae.py:quick --workdir=runs/cae
  python -m experiments.cross_validate --config=configs/headct/cae.py --workdir=runs/cae \
      --config.data.root=/path/to/head_ct --config.train.dtype=bfloat16

Running the same command again resumes an interrupted run. At the end the report (figures and
report.md in WORKDIR/report, see experiments.report) is written, unless --noreport (the default
follows config.cv.figures, which the :tiny variant turns off). On several hosts, start the same
command on each with --distributed (JAX's own multi-host runtime: jax.distributed.initialize
reads the coordinator address, process count and id from the cluster environment, or from
--coordinator_address, --num_processes and --process_id; see docs/performance.md).
A bad config, bad data, a busy workdir or one that cannot be written (read-only, full) exits
with status 2 and one message; SIGTERM or Ctrl-C saves the latest checkpoint and exits with 128 +
the signal. A run that finished with an iteration whose training diverged exits with status 3
(uadjax.protocol.divergence: the summary lists it, its mean leaves it out).
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from uadjax import protocol, runtime
from uadjax.protocol import divergence
from uadjax.run import storage

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Config file (see configs/).', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for checkpoints and results.')
_DISTRIBUTED = flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize().')
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address',
  None,
  "With --distributed: process 0's 'host:port' (default: found by JAX in the cluster environment).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes', None, 'With --distributed: the number of processes.'
)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, "With --distributed: this process's id.")
_HEARTBEAT = flags.DEFINE_integer(
  'heartbeat_timeout',
  None,
  "With --distributed: seconds before a silent process stops the others (JAX's default 100).",
)
_REPORT = flags.DEFINE_bool(
  'report', None, 'Write WORKDIR/report at the end (default: config.cv.figures).'
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  runtime.setup(
    distributed=_DISTRIBUTED.value,
    coordinator_address=_COORDINATOR.value,
    num_processes=_NUM_PROCESSES.value,
    process_id=_PROCESS_ID.value,
    heartbeat_timeout_s=_HEARTBEAT.value,
  )
  with runtime.user_errors():
    summary = protocol.run(_CONFIG.value, _WORKDIR.value)
  logging.info('Results in %s', _WORKDIR.value)
  report = _CONFIG.value.cv.figures if _REPORT.value is None else _REPORT.value
  if report and jax.process_index() == 0 and summary['n_iterations']:
    from uadjax.reports import write_report  # matplotlib and scikit-learn: only for the report

    with (
      runtime.user_errors(),
      storage.reported(_WORKDIR.value, 'writing the report', storage.REWRITES),
    ):
      logging.info('Report: %s', write_report(_WORKDIR.value))
  print(protocol.format_summary(summary, _WORKDIR.value))
  if summary.get('diverged'):
    iterations = ', '.join(str(d['iteration']) for d in summary['diverged'])
    logging.error(
      'Iterations diverged: %s (see summary.md); exit status %d.',
      iterations,
      divergence.EXIT_STATUS,
    )
    sys.exit(divergence.EXIT_STATUS)


if __name__ == '__main__':
  app.run(main)
