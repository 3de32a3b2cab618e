"""The preprocessed data sets kept on disk between processes (uadjax.data.stored)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from configs.headct import cae
from uadjax import compilation_cache
from uadjax.data import dataset, stored


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """A cache folder of the test's own; each `load` as a new process would (nothing in memory)."""
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / 'jax'))
  monkeypatch.setattr(dataset, '_LAST_LOADED', [])
  return tmp_path / 'jax-data'


def _fresh_load(data_config):
  dataset._LAST_LOADED.clear()
  return dataset.load(data_config)


def _refuse_decoding(monkeypatch):
  def refuse(data_config):
    raise AssertionError('decoded the files again')

  monkeypatch.setattr(dataset, '_read', refuse)


def _same(a, b):
  for name in ('images', 'labels', 'groups', 'masks'):
    x, y = getattr(a, name), getattr(b, name)
    assert (x is None) == (y is None), name
    if x is not None:
      assert x.dtype == y.dtype and x.shape == y.shape, name
      assert x.tobytes() == y.tobytes(), name  # bit for bit
  assert a.names == b.names and all(type(n) is str for n in b.names)


def test_a_second_process_reads_the_arrays_instead_of_decoding(cache, monkeypatch):
  config = cae.get_config('tiny,phantoms')
  first = _fresh_load(config.data)
  assert first.masks is not None
  assert len(list(cache.glob('*.npz'))) == 1
  _refuse_decoding(monkeypatch)
  second = _fresh_load(config.data)
  _same(first, second)
  assert not second.images.flags.writeable  # like every loaded data set


def test_a_changed_file_or_decoder_decodes_again(cache, tmp_path, monkeypatch):
  root = tmp_path / 'images'
  root.mkdir()
  rng = np.random.default_rng(0)
  for i in range(6):
    Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8)).save(root / f'{i:03d}.png')
  (root / 'labels.csv').write_text('id,hemorrhage\n' + ''.join(f'{i},{i % 2}\n' for i in range(6)))
  config = cae.get_config('tiny')
  config.data.root = str(root)
  first = _fresh_load(config.data)
  Image.fromarray(np.zeros((20, 20), np.uint8) + 7).save(root / '000.png')
  changed = _fresh_load(config.data)
  assert not np.array_equal(changed.images[0], first.images[0])
  # A new version of a data module (or of Pillow, numpy, pydicom): a new entry.
  monkeypatch.setattr(stored, '_decoders', lambda: 'another reader')
  decoded = []
  read = dataset._read
  monkeypatch.setattr(dataset, '_read', lambda c: decoded.append(1) or read(c))
  _fresh_load(config.data)
  assert decoded == [1]
  assert len(list(cache.glob('*.npz'))) == 3


def test_a_broken_entry_is_decoded_again_and_replaced(cache, caplog):
  config = cae.get_config('tiny,phantoms')
  first = _fresh_load(config.data)
  (entry,) = cache.glob('*.npz')
  entry.write_bytes(entry.read_bytes()[:1000])  # a disk that filled up mid-write
  again = _fresh_load(config.data)
  assert 'cannot read' in caplog.text
  _same(first, again)
  _same(first, _fresh_load(config.data))  # the entry written again reads back


def test_the_folder_keeps_the_last_used_entries_within_its_size(cache, monkeypatch):
  config = cae.get_config('tiny,phantoms')
  then = time.time() - 1000
  entries = []
  for seed in range(3):
    config.data.phantoms.seed = seed
    _fresh_load(config.data)
    (new,) = set(cache.glob('*.npz')) - set(entries)
    os.utime(new, (then + seed, then + seed))  # written in this order, seconds apart
    entries.append(new)
  os.utime(entries[0], (then + 10, then + 10))  # the oldest used again: now the newest
  monkeypatch.setattr(stored, 'MAX_BYTES', sum(p.stat().st_size for p in entries[:2]))
  config.data.phantoms.seed = 3
  _fresh_load(config.data)  # room for two: the new one and the one used last
  left = set(cache.glob('*.npz'))
  assert len(left) == 2 and entries[0] in left
  monkeypatch.setattr(stored, 'MAX_BYTES', 1000)  # a data set larger than the folder
  config.data.phantoms.seed = 4
  _fresh_load(config.data)
  assert set(cache.glob('*.npz')) == left  # not kept: it would crowd out every other
  _refuse_decoding(monkeypatch)
  config.data.phantoms.seed = 0
  _fresh_load(config.data)  # still read from disk


def test_nothing_is_kept_with_the_cache_off(tmp_path, monkeypatch):
  monkeypatch.setenv(compilation_cache.ENV, 'off')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  monkeypatch.setattr(dataset, '_LAST_LOADED', [])
  _fresh_load(cae.get_config('tiny,phantoms').data)
  assert not list(tmp_path.rglob('*.npz'))
