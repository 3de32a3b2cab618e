"""The study's protocols: splits in, per-iteration results and a summary out.

For each iteration: train on normal images only (a supervised task, the fundus classifier, on
both classes); every `cv.val_every` epochs score the validation set and keep the checkpoint
with the best selection metric (study: validation AUC; the classifier: validation loss); choose
the threshold on the validation scores; apply both once to the test set.

Modules:
  setup      the data, splits, task and engine of a run (`Protocol`), each iteration's fold data
  group      iterations trained together: placement, sharding, gathering, 'latest' checkpoints,
             resuming, the loop of compiled calls (`Group`, `iteration_groups`, `train_groups`)
  progress   history.json, progress.csv and the log line of every call
  summaries  TensorBoard event files: WORKDIR/tensorboard/iter_XX, written after every call
  evaluate   threshold, test metrics, the test-only class, metrics.json, the summary
  driver     `run(config, workdir)`: the only driver (the family's phases, then the scored one)

The workdir's layout: `uadjax.run.layout`.
"""

from uadjax.data.splits import SCHEMES, make_splits
from uadjax.protocol.driver import check_data, finished_results, open_run, run, save_config
from uadjax.protocol.evaluate import finish_iteration, format_summary, summarize, write_summary
from uadjax.protocol.group import Group, iteration_groups, train_groups
from uadjax.protocol.setup import Protocol, warn_small_classes

__all__ = [
  'SCHEMES',
  'Group',
  'Protocol',
  'check_data',
  'finish_iteration',
  'finished_results',
  'format_summary',
  'iteration_groups',
  'make_splits',
  'open_run',
  'run',
  'save_config',
  'summarize',
  'train_groups',
  'warn_small_classes',
  'write_summary',
]
