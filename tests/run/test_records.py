"""The run's records (uadjax.run.records) and its layout (uadjax.run.layout)."""

import json
import os
import shutil

import pytest

from uadjax import inference
from uadjax.run import records
from uadjax.run.layout import RunDir


def test_a_finished_runs_records_round_trip(tiny_run, fanogan_run):
  run = RunDir(str(tiny_run))
  assert run.iterations_with() == [0, 1]
  for i in run.iterations_with():
    saved = json.loads(open(run.metrics(i)).read())
    assert records.IterationRecord.from_json(saved).to_json() == saved
  gan = RunDir(str(fanogan_run)).of_phase('gan')
  assert gan.iterations_with('gan.json') == [0, 1]
  saved = json.loads(open(gan.record(0, 'gan.json')).read())
  assert records.GANRecord.from_json(saved).to_json() == saved
  # The layout's paths are where the run wrote its files.
  assert os.path.isfile(os.path.join(gan.samples(0), 'selected.png'))
  assert os.path.isdir(gan.best(0)) and os.path.isfile(gan.history(0))


def test_a_metrics_file_without_its_fields_is_named(tiny_run, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(tiny_run, workdir)
  path = workdir / 'iter_01' / 'metrics.json'
  record = json.loads(path.read_text())
  del record['test'], record['threshold']
  path.write_text(json.dumps(record))
  with pytest.raises(records.RecordError, match=r'iter_01/metrics.json.*missing threshold, test'):
    inference.finished_iterations(str(workdir))
