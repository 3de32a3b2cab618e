"""Preprocessed data sets kept on disk between runs, beside the compilation cache.

Once a run's programs come from the compilation cache, decoding and resizing its images is a
sixth of its time before the first epoch (the CAE on the real head CT: 0.45 s of 2.8 s; the
decoding alone 0.39 s for the 200 PNGs at 64², 1.4 s and 1.7 s for the 216 fundus images at
224² and 256², 2-core development CPU); reading the arrays back from one uncompressed .npz
file takes a few milliseconds. `uadjax.data.load` keeps every data set it decodes in
`compilation_cache.data_dir()` (the compilation cache's folder + '-data'; off with it), in one
file named by `key`: the data config and the bytes of every file it reads (`dataset._key`),
the bytes of uadjax's data modules and the versions of numpy, Pillow, pydicom and pydicom's
pixel-data plugins that decode them. A changed image, label file, option, reader or library
reads the files again.

The folder keeps the data sets used last, up to `MAX_BYTES` in all (the fundus sets are
110-130 MB each); it may be deleted at any time, and an entry that cannot be read (a full disk,
a foreign file) is decoded again, never trusted.

Attributes:
  MAX_BYTES: the size the folder is pruned to, least recently used first.
  key, read, write: the entry's name for a data set key, reading one back, writing one.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import os
import tempfile

import numpy as np
import PIL
from absl import logging

from uadjax import io

MAX_BYTES = 1 << 30
_SUFFIX = '.npz'
_ARRAYS = ('images', 'labels', 'groups', 'names', 'masks')
# pydicom and the plugins it decodes compressed pixel data with, where installed.
_DICOM_LIBRARIES = (
  'pydicom',
  'pylibjpeg',
  'pylibjpeg-libjpeg',
  'pylibjpeg-openjpeg',
  'python-gdcm',
)


def _decoders() -> str:
  """What decodes the files, beside the data config: uadjax's data modules (their bytes) and
  the versions of the libraries they call."""
  package = os.path.dirname(os.path.abspath(__file__))
  modules = sorted(p for p in os.listdir(package) if p.endswith('.py'))
  head = f'numpy {np.__version__} pillow {PIL.__version__}'
  for library in _DICOM_LIBRARIES:
    try:
      head += f' {library} {importlib.metadata.version(library)}'
    except importlib.metadata.PackageNotFoundError:
      pass
  return io.files_digest([(m, os.path.join(package, m)) for m in modules], head) or ''


def key(data_key: str) -> str | None:
  """The name of the entry of the data set whose `dataset._key` is `data_key`; None when a
  data module cannot be read."""
  decoders = _decoders()
  if not decoders:
    return None
  return hashlib.sha256(f'{data_key}\n{decoders}'.encode()).hexdigest()


def read(folder: str, name: str) -> dict | None:
  """The arrays of entry `name` ({'images', 'labels', 'groups', 'names' (a list), 'masks' (or
  None)}), or None when there is none or it cannot be read (then it is removed)."""
  path = os.path.join(folder, name + _SUFFIX)
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as saved:
      arrays = {k: saved[k] for k in saved.files}
    out = {k: arrays.get(k) for k in _ARRAYS}
    if any(out[k] is None for k in _ARRAYS[:4]) or not (
      len(out['images']) == len(out['labels']) == len(out['groups']) == len(out['names'])
    ):
      raise ValueError(f'arrays {sorted(arrays)} of unequal lengths')
    out['names'] = [str(n) for n in out['names']]
  except Exception as e:  # a broken entry is decoded again, never trusted
    logging.warning('Decoding the images again: cannot read %s (%s).', path, e)
    try:
      os.remove(path)
    except OSError:
      pass
    return None
  try:
    os.utime(path)  # used now: pruned last
  except OSError:
    pass  # a folder shared read-only
  return out


def write(folder: str, name: str, images, labels, groups, names, masks) -> None:
  """Writes entry `name` atomically (a temporary file, then a rename), then prunes the folder to
  `MAX_BYTES`. A data set larger than `MAX_BYTES` is not kept (it would crowd out every other),
  and a folder or disk that refuses it only logs a warning: a run never fails for it."""
  if images.nbytes > MAX_BYTES:
    logging.info(
      'Images not kept in %s: %d MB, over %d MB.', folder, images.nbytes >> 20, MAX_BYTES >> 20
    )
    return
  arrays = dict(images=images, labels=labels, groups=groups, names=np.asarray(names, dtype=str))
  if masks is not None:
    arrays['masks'] = masks
  tmp = None
  try:
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix=_SUFFIX)
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, os.path.join(folder, name + _SUFFIX))
    tmp = None
    _prune(folder, keep=name + _SUFFIX)
  except OSError as e:
    logging.warning('Preprocessed images not kept in %s (%s).', folder, e)
  finally:
    if tmp is not None and os.path.exists(tmp):
      os.remove(tmp)


def _prune(folder: str, keep: str) -> None:
  """Removes the least recently used entries (not `keep`) until the folder holds `MAX_BYTES`."""
  entries = []
  for path in glob.glob(os.path.join(folder, '*' + _SUFFIX)):
    try:
      stat = os.stat(path)
    except OSError:
      continue  # removed meanwhile by another run
    entries.append((stat.st_mtime, stat.st_size, path))
  total = sum(size for _, size, _ in entries)
  for _, size, path in sorted(entries):
    if total <= MAX_BYTES:
      break
    if os.path.basename(path) == keep:
      continue
    try:
      os.remove(path)
    except OSError:
      pass
    total -= size
