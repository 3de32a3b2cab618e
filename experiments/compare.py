r"""The study's summary table and the ROC curves of several runs, beside the published rows.

  python -m experiments.compare runs/cae_quick runs/ssae_quick --out=runs/compare

Writes OUT/comparison.md, OUT/comparison.csv and OUT/roc.png, and prints the table. A run whose
config.json fails the config check exits with status 2 and one message naming it.
"""

from absl import app, flags, logging

from uadjax import runtime
from uadjax.reports import compare_runs
from uadjax.run import storage

_OUT = flags.DEFINE_string('out', 'runs/compare', 'Output folder.')


def main(argv):
  with runtime.user_errors(), storage.reported(_OUT.value, 'writing', storage.REWRITES):
    result = compare_runs(argv[1:], _OUT.value)
  logging.info('Comparison written to %s', _OUT.value)
  print(result['markdown'])


if __name__ == '__main__':
  app.run(main)
