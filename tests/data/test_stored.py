"""The preprocessed data sets kept on disk between processes (uadjax.data.stored)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from configs.headct import cae
from uadjax.data import DataError, dataset, stored
from uadjax.run import compilation_cache


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

  monkeypatch.setattr(dataset, 'read_dataset', refuse)


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
  monkeypatch.setattr(stored, 'decoder_modules', lambda: 'another reader')
  decoded = []
  read = dataset.read_dataset
  monkeypatch.setattr(dataset, 'read_dataset', lambda c: decoded.append(1) or read(c))
  _fresh_load(config.data)
  assert decoded == [1]
  assert len(list(cache.glob('*.npz'))) == 3


def test_a_broken_entry_is_decoded_again_and_replaced(cache, caplog):
  config = cae.get_config('tiny,phantoms')
  first = _fresh_load(config.data)
  (entry,) = cache.glob('*.npz')
  entry.write_bytes(entry.read_bytes()[:1000])  # a disk that filled up mid-write
  again = _fresh_load(config.data)
  assert 'is broken' in caplog.text
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


def test_an_entry_the_system_cannot_read_now_is_not_called_broken(cache, monkeypatch, caplog):
  config = cae.get_config('tiny,phantoms')
  first = _fresh_load(config.data)

  def too_many_open_files(*args, **kwargs):
    raise OSError(24, 'Too many open files')

  monkeypatch.setattr(stored.np, 'load', too_many_open_files)
  decoded = []
  read = dataset.read_dataset
  monkeypatch.setattr(dataset, 'read_dataset', lambda c: decoded.append(1) or read(c))
  _same(first, _fresh_load(config.data))
  assert decoded == [1] and 'cannot read' in caplog.text and 'broken' not in caplog.text


def _class_folders(root, normal, abnormal):
  config = cae.get_config('tiny')
  config.data.source = 'class_folders'
  config.data.root = str(root)
  config.data.normal_classes, config.data.abnormal_classes = normal, abnormal
  return config


def _images(folder, n, seed):
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(n):
    Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8)).save(folder / f'{i}.png')


def test_files_through_symlinks_and_outside_the_root_are_in_the_key(cache, tmp_path):
  """The readers open a class folder that is a symlink, or outside the root ('../Good'), and a
  labels file outside it ('../labels.csv'): a change there reads the files again."""
  elsewhere = tmp_path / 'elsewhere'
  _images(elsewhere / 'Good', 4, 0)
  _images(tmp_path / 'Bad', 4, 1)
  root = tmp_path / 'root'
  root.mkdir()
  (root / 'Good').symlink_to(elsewhere / 'Good', target_is_directory=True)
  for normal, abnormal in ((['Good'], ['../Bad']), (['Good'], [str(tmp_path / 'Bad')])):
    config = _class_folders(root, normal, abnormal)
    first = _fresh_load(config.data)
    rng = np.random.default_rng(7)
    for changed in (elsewhere / 'Good' / '0.png', tmp_path / 'Bad' / '0.png'):
      Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8)).save(changed)
    again = _fresh_load(config.data)
    names = again.names
    changed = [names.index(n) for n in names if n.endswith('0.png')]
    assert len(changed) == 2
    for i in changed:
      assert not np.array_equal(again.images[i], first.images[i]), names[i]
    _images(elsewhere / 'Good', 4, 0)  # as before, for the next form
    _images(tmp_path / 'Bad', 4, 1)
  images = tmp_path / 'images'
  _images(images, 6, 2)
  for i in range(6):
    (images / f'{i}.png').rename(images / f'{i:03d}.png')
  labels = tmp_path / 'labels.csv'
  labels.write_text('id,hemorrhage\n' + ''.join(f'{i},{i % 2}\n' for i in range(6)))
  config = cae.get_config('tiny')
  config.data.root, config.data.labels_file = str(images), '../labels.csv'
  first = _fresh_load(config.data)
  labels.write_text('id,hemorrhage\n' + ''.join(f'{i},{1 - i % 2}\n' for i in range(6)))
  np.testing.assert_array_equal(_fresh_load(config.data).labels, 1 - first.labels)


def test_what_the_readers_said_is_said_again(cache, tmp_path, caplog):
  root = tmp_path / 'images'
  _images(root, 5, 3)
  for i in range(5):
    (root / f'{i}.png').rename(root / f'{i:03d}.png')
  Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / '000.png')  # blank
  (root / 'labels.csv').write_text('id,hemorrhage\n' + ''.join(f'{i},{i % 2}\n' for i in range(5)))
  config = cae.get_config('tiny')
  config.data.root = str(root)
  caplog.set_level('INFO')
  _fresh_load(config.data)
  said = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert any('000.png' in m for m in said), said
  caplog.clear()
  _fresh_load(config.data)
  assert 'decoded by an earlier run' in caplog.text
  assert [r.getMessage() for r in caplog.records if r.levelname == 'WARNING'] == said


def test_reading_an_entry_marks_it_used(cache):
  config = cae.get_config('tiny,phantoms')
  _fresh_load(config.data)
  (entry,) = cache.glob('*.npz')
  os.utime(entry, (1000, 1000))
  _fresh_load(config.data)
  assert entry.stat().st_mtime > time.time() - 600


def test_a_folder_that_refuses_the_entry_only_warns(tmp_path, monkeypatch, caplog):
  (tmp_path / 'file').write_text('')
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / 'file' / 'jax'))  # under a file
  monkeypatch.setattr(dataset, '_LAST_LOADED', [])
  assert _fresh_load(cae.get_config('tiny,phantoms').data).images.size
  assert 'not kept' in caplog.text


def test_a_killed_writes_temporary_file_is_removed_later(cache):
  config = cae.get_config('tiny,phantoms')
  cache.mkdir(parents=True)
  old, new = cache / '.tmp-killed.npz', cache / '.tmp-writing.npz'
  old.write_bytes(b'x' * 100)
  new.write_bytes(b'x' * 100)
  os.utime(old, (time.time() - 2 * 3600,) * 2)
  _fresh_load(config.data)  # writes an entry, then prunes
  assert not old.exists() and new.exists()  # another run may be writing that one


def test_the_decoders_digest_follows_the_modules_and_library_versions(monkeypatch):
  import importlib.metadata

  before = stored.decoder_modules()
  real = importlib.metadata.version
  monkeypatch.setattr(importlib.metadata, 'version', lambda n: '0.0' if n == 'pydicom' else real(n))
  assert stored.decoder_modules() != before
  monkeypatch.setattr(importlib.metadata, 'version', real)
  monkeypatch.setattr(stored.np, '__version__', '0.0')
  assert stored.decoder_modules() != before


def test_a_lower_pixel_limit_reads_the_files_again(cache, tmp_path, monkeypatch):
  root = tmp_path / 'images'
  _images(root, 4, 4)
  for i in range(4):
    (root / f'{i}.png').rename(root / f'{i:03d}.png')
  (root / 'labels.csv').write_text('id,hemorrhage\n' + ''.join(f'{i},{i % 2}\n' for i in range(4)))
  config = cae.get_config('tiny')
  config.data.root = str(root)
  _fresh_load(config.data)
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)  # 20x20 images: over twice the limit
  with pytest.raises(DataError, match='decompression bomb'):
    _fresh_load(config.data)
