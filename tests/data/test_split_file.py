"""Published splits from a file (`data.split_file`): read and checked, then the hold-out split
that keeps the file's test split and draws validation from its train split only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_config
from uadjax import config as config_lib
from uadjax import io
from uadjax import protocol as protocol_lib
from uadjax.data import DataError
from uadjax.data.phantoms import make_phantoms
from uadjax.data.splits import published_split, read_split_file

NAMES = ['normal/a.png', 'normal/b.png', 'normal/c.png', 'pneumonia/d.png', 'pneumonia/e.png']


def _csv(path, rows):
  path.write_text('split,class,file\n' + ''.join(f'{s},{c},{f}\n' for s, c, f in rows))
  return str(path)


def test_rows_are_matched_by_class_and_file_and_frames_take_their_files_split(tmp_path):
  rows = [('train', 'normal', 'a.png'), ('test', 'normal', 'b.png'), ('train', 'normal', 'c.png')]
  rows += [('train', 'pneumonia', 'd.png'), ('test', 'pneumonia', 'e.png')]
  names = [*NAMES[:4], 'pneumonia/e.png#0', 'pneumonia/e.png#1']
  got = read_split_file(_csv(tmp_path / 'split.csv', rows), names)
  assert list(got) == ['train', 'test', 'train', 'train', 'test', 'test']


def test_a_bad_file_is_refused_naming_each_bad_row(tmp_path):
  rows = [('train', 'normal', 'a.png'), ('validation', 'normal', 'b.png')]
  rows += [('train', 'normal', 'zzz.png'), ('test', 'normal', 'a.png')]
  with pytest.raises(DataError) as e:
    read_split_file(_csv(tmp_path / 'split.csv', rows), NAMES)
  text = str(e.value)
  assert "row 3: split 'validation'" in text
  assert "row 4: 'zzz.png' is not an image" in text
  assert 'row 5: normal/a.png is named twice' in text
  assert '4 images have no row' in text and 'split.csv' in text
  (tmp_path / 'bad.csv').write_text('name,fold\na,1\n')
  with pytest.raises(DataError, match="columns 'split' and 'file'"):
    read_split_file(str(tmp_path / 'bad.csv'), NAMES)


def test_the_test_split_is_the_files_and_validation_comes_from_its_train_split():
  labels = np.array([0] * 60 + [1] * 40)
  assigned = np.array(['train'] * 50 + ['test'] * 10 + ['train'] * 30 + ['test'] * 10)
  split = published_split(labels, np.arange(100), assigned, seed=3)
  assert list(split.test) == list(range(50, 60)) + list(range(90, 100))
  assert not set(split.train) & set(split.val)
  assert set(split.train) | set(split.val) <= set(np.flatnonzero(assigned == 'train'))
  assert (labels[split.val] == 0).sum() == 10 and (labels[split.val] == 1).sum() == 6
  again = published_split(labels, np.arange(100), assigned, seed=3)
  assert list(again.val) == list(split.val)
  with pytest.raises(ValueError, match='test share 0'):
    published_split(labels, np.arange(100), assigned, normal_fractions=(0.6, 0.2, 0.2))


@pytest.fixture
def xray_folder(tmp_path):
  """Class folders of phantoms with a split.csv: 24 normal, 12 'pneumonia'."""
  images, labels, _, _ = make_phantoms(n_normal=24, n_abnormal=12, size=32, seed=1)
  rows = []
  for k, (x, y) in enumerate(zip(images, labels, strict=True)):
    cls = 'pneumonia' if y else 'normal'
    (tmp_path / cls).mkdir(exist_ok=True)
    Image.fromarray((x[..., 0] * 255).astype(np.uint8)).save(tmp_path / cls / f'{k}.png')
    rows.append(('test' if k % 4 == 0 else 'train', cls, f'{k}.png'))
  _csv(tmp_path / 'split.csv', rows)
  return tmp_path


def _config(root, **overrides):
  config = make_config('configs/chest_xray/intensity.py:tiny', **overrides)
  config.data.root = str(root)
  config.data.image_size = 32
  return config


def test_a_family_runs_under_the_published_split(xray_folder, tmp_path):
  summary = protocol_lib.run(_config(xray_folder), str(tmp_path / 'run'))
  assert summary['n_iterations'] == 1
  metrics = io.read_json(tmp_path / 'run' / 'iter_00' / 'metrics.json')
  assert sorted(metrics['test_names']) == sorted(
    f'{c}/{k}.png'
    for k in range(0, 36, 4)
    for c in ('normal', 'pneumonia')
    if (xray_folder / c / f'{k}.png').exists()
  )
  assert not set(metrics['val_names']) & set(metrics['test_names'])


def test_a_split_file_without_the_holdout_scheme_or_missing_is_refused_before_any_file(
  xray_folder, tmp_path
):
  with pytest.raises(config_lib.ConfigError, match="needs cv.scheme='holdout'"):
    config_lib.validate(_config(xray_folder, **{'cv.scheme': '2x5'}))
  with pytest.raises(config_lib.ConfigError, match='test share must be 0'):
    config_lib.validate(_config(xray_folder, **{'cv.normal_fractions': (0.6, 0.2, 0.2)}))
  with pytest.raises(DataError, match='nope.csv: cannot be read'):
    protocol_lib.run(_config(xray_folder, **{'data.split_file': 'nope.csv'}), str(tmp_path / 'r'))
  (xray_folder / 'split.csv').write_text('split,class,file\ntrain,normal,0.png\n')
  with pytest.raises(DataError, match='images have no row'):
    protocol_lib.run(_config(xray_folder), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists() and not (tmp_path / 'r').exists()
