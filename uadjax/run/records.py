"""The records a run writes: one iteration's result (metrics.json: its test metrics, or its
divergence) and a GAN phase's selection (gan.json), as typed dataclasses with `to_json` /
`from_json`.

The protocol builds them and writes `to_json()`; readers (`uadjax.inference`, the reports)
read files through `read_metrics`, which checks the schema and names the file and the missing
fields when a file is not a uadjax record. Optional fields are those an older run lacks or a
family does not write (`extra_test`: a test-only class; `test_score_parts`: a composite score).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from uadjax import io


class RecordError(ValueError):
  """A record file that is not what uadjax writes; the message names the file."""


def _from_json(cls, record: dict, path: str):
  fields = dataclasses.fields(cls)
  required = [f.name for f in fields if f.default is dataclasses.MISSING]
  missing = [name for name in required if name not in record]
  if missing:
    raise RecordError(f'{path}: not a uadjax {cls.__name__} (missing {", ".join(missing)}).')
  known = {f.name for f in fields}
  return cls(**{k: v for k, v in record.items() if k in known})


def _to_json(record) -> dict:
  """The record's fields, an optional one (default None) left out when it is None."""
  optional = {f.name for f in dataclasses.fields(record) if f.default is None}
  out = dataclasses.asdict(record)
  return {k: v for k, v in out.items() if not (k in optional and v is None)}


@dataclasses.dataclass
class IterationRecord:
  """metrics.json: one iteration of the scored phase, written last (it marks the iteration done).

  Attributes:
    iteration, normal_fold, abnormal_half: which split (the 2x5 protocol's fold and half; the
      hold-out's are None).
    n_train, n_val, n_test: the split's sizes.
    history: {'epoch', 'train_loss'}: the mean training loss of every epoch.
    validation: {'epoch', 'auc', 'loss'} at every validation.
    selection, selected_epoch, selection_metric: how the checkpoint was chosen, and its epoch
      (None for a fitted family, which has no epochs: `validation` then names its candidates,
      {'candidate', 'auc', 'loss'}, and `selected_candidate` the one kept; None for a fused
      run, nothing trained).
    threshold: {'method', 'value'} chosen on the validation scores.
    val_scores, val_labels: the selected model's validation scores and labels.
    val_names: the validation images, in the order of `val_scores` (runs written before it
      existed lack it).
    test: the test metrics (auc, accuracy, recall, precision, f1, specificity, ...).
    test_scores, test_labels, test_names: per test image.
    extra_test: the test-only class against the test normals ({'classes', 'metrics', 'scores',
      'names'}), where the data has one.
    test_score_parts: {term: per test image} of a composite score (f-AnoGAN; a fused run: each
      member's weighted standardised score).
    ensemble: a fused run's rule of the iteration ({'rule', 'members': [{'run', 'weight',
      'mean', 'std', 'val_auc', 'test_auc'}]}; `uadjax.ensemble`).
  """

  iteration: int
  normal_fold: Any
  abnormal_half: Any
  n_train: int
  n_val: int
  n_test: int
  history: dict
  validation: dict
  selection: str
  selected_epoch: int | None
  selection_metric: float
  threshold: dict
  val_scores: list
  val_labels: list
  test: dict
  test_scores: list
  test_labels: list
  test_names: list
  val_names: list | None = None
  extra_test: dict | None = None
  test_score_parts: dict | None = None
  selected_candidate: str | None = None
  ensemble: dict | None = None

  def to_json(self) -> dict:
    """The record as metrics.json holds it (absent optional fields left out)."""
    return _to_json(self)

  @classmethod
  def from_json(cls, record: dict, path: str = 'metrics.json') -> IterationRecord:
    """The record of a metrics.json; RecordError naming `path` if a field is missing."""
    return _from_json(cls, record, path)


@dataclasses.dataclass
class GANRecord:
  """gan.json: the GAN phase's selection of one iteration, written last (it marks the phase
  done).

  Attributes:
    iteration: the iteration.
    selection: how the generator was chosen (a sentence).
    selected_epoch, selected_swd: its epoch and its sliced Wasserstein distance (x 1e3).
    select_epochs, swd: the distance at every selection epoch.
    critic_val_auc: the critic's validation AUC at those epochs.
    epoch, critic_loss: the critic loss of every epoch.
  """

  iteration: int
  selection: str
  selected_epoch: int
  selected_swd: float
  select_epochs: list
  swd: list
  critic_val_auc: list
  epoch: list
  critic_loss: list

  def to_json(self) -> dict:
    """The record as gan.json holds it."""
    return _to_json(self)

  @classmethod
  def from_json(cls, record: dict, path: str = 'gan.json') -> GANRecord:
    """The record of a gan.json; RecordError naming `path` if a field is missing."""
    return _from_json(cls, record, path)


@dataclasses.dataclass
class DivergedRecord:
  """metrics.json of a diverged iteration (written instead of an `IterationRecord`: it marks
  the iteration done, without test metrics; `uadjax.protocol.divergence`).

  Attributes:
    iteration, normal_fold, abnormal_half: which split.
    diverged: {'phase' ('' for the scored phase, else its folder: 'gan'), 'epoch', 'loss' (the
      training loss there; NaN where the scores are what is not finite), 'reason', 'message'}.
    history: {'epoch', 'train_loss'} up to the epoch it diverged at.
  """

  iteration: int
  normal_fold: object
  abnormal_half: object
  diverged: dict
  history: dict

  def to_json(self) -> dict:
    """The record as metrics.json holds it."""
    return _to_json(self)

  @classmethod
  def from_json(cls, record: dict, path: str = 'metrics.json') -> DivergedRecord:
    """The record of a diverged iteration's metrics.json; RecordError naming `path`."""
    return _from_json(cls, record, path)


def is_diverged(record: dict) -> bool:
  """Whether a metrics.json (as a dict) is a diverged iteration's (`DivergedRecord`)."""
  return isinstance(record, dict) and 'diverged' in record


def read_metrics(path: str) -> dict:
  """A metrics.json, checked against `IterationRecord` (or `DivergedRecord`: see
  `is_diverged`; RecordError naming the file when it is neither), as the dict the reports
  read."""
  record = io.read_json(path)
  (DivergedRecord if is_diverged(record) else IterationRecord).from_json(record, path)
  return record
