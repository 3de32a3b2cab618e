r"""The study's summary table and the ROC curves of several runs, beside the published rows.

  python -m experiments.compare runs/cae_quick runs/ssae_quick --out=runs/compare

Writes OUT/comparison.md, OUT/comparison.csv and OUT/roc.png, and prints the table.
"""

from absl import app, flags, logging

from uadjax.reports import compare_runs

_OUT = flags.DEFINE_string('out', 'runs/compare', 'Output folder.')


def main(argv):
  result = compare_runs(argv[1:], _OUT.value)
  logging.info('Comparison written to %s', _OUT.value)
  print(result['markdown'])


if __name__ == '__main__':
  app.run(main)
