"""Preprocessed data sets kept on disk between runs, beside the compilation cache.

Once a run's programs come from the compilation cache, decoding and resizing its images is a
sixth of its time before the first epoch (the CAE on the real head CT: 0.45 s of 2.8 s; the
decoding alone 0.39 s for the 200 PNGs at 64², 1.4 s and 1.7 s for the 216 fundus images at
224² and 256², 2-core development CPU); reading the arrays back from one uncompressed .npz
file takes a few milliseconds. `uadjax.data.load` keeps every data set it decodes in
`compilation_cache.data_dir()` (the compilation cache's folder + '-data'; off with it), in one
file named by `key`: the data config, PIL's pixel limit and the bytes of every file the
readers open, through symlinks and outside the root alike (`dataset._key`), the bytes of
uadjax's data modules and the versions of numpy, Pillow, pydicom and pydicom's pixel-data
plugins that decode them. A changed image, label file, option, reader or library reads the
files again. What the readers logged while decoding (blank, tiny or oversized images, the DICOM
intensities) is kept with the arrays and logged again by every run that reads them back.

The folder keeps the data sets used last, up to `MAX_BYTES` in all (the fundus sets are
110-130 MB each); it may be deleted at any time, and an entry that cannot be read (a full disk,
a foreign file) is decoded again, never trusted.

Attributes:
  MAX_BYTES: the size the folder is pruned to, least recently used first.
  key, read, write: the entry's name for a data set key, reading one back, writing one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.metadata
import os
import tempfile
import time

import numpy as np
import PIL
from absl import logging

from uadjax import io

MAX_BYTES = 1 << 30
_SUFFIX = '.npz'
_ARRAYS = ('images', 'labels', 'groups', 'names', 'masks')
# A temporary file older than this is a write that was killed (a write takes seconds).
_STALE_TMP_S = 3600
# pydicom and the plugins it decodes compressed pixel data with, where installed.
_DICOM_LIBRARIES = (
  'pydicom',
  'pylibjpeg',
  'pylibjpeg-libjpeg',
  'pylibjpeg-openjpeg',
  'pylibjpeg-rle',
  'pyjpegls',
  'python-gdcm',
)


def decoder_modules() -> str:
  """What decodes the files, beside the data config: uadjax's data modules (their bytes) and
  the versions of the libraries they call."""
  package = os.path.dirname(os.path.abspath(__file__))
  modules = [os.path.relpath(p, package) for p in io.files_under(package) if p.endswith('.py')]
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
  decoders = decoder_modules()
  if not decoders:
    return None
  return hashlib.sha256(f'{data_key}\n{decoders}'.encode()).hexdigest()


def read(folder: str, name: str) -> dict | None:
  """Entry `name`: {'images', 'labels', 'groups', 'names' (a list of str), 'masks' (or None),
  'said' (a list of (logging level, message))}; None when there is none or it cannot be read.

  An entry that is not what `write` writes is removed; one that the system cannot read now (too
  many open files, say) is left for the next run.
  """
  path = os.path.join(folder, name + _SUFFIX)
  try:
    with np.load(path, allow_pickle=False) as saved:
      arrays = {k: saved[k] for k in saved.files}
  except FileNotFoundError:
    return None  # none, or pruned meanwhile by another run
  except OSError as e:
    logging.warning('Decoding the images again: cannot read %s now (%s).', path, e)
    return None
  except Exception as e:  # not an archive: decoded again, never trusted
    return _broken(path, e)
  out = {k: arrays.get(k) for k in _ARRAYS}
  if any(out[k] is None for k in _ARRAYS[:4]) or not (
    len(out['images']) == len(out['labels']) == len(out['groups']) == len(out['names'])
  ):
    return _broken(path, f'arrays {sorted(arrays)}, not those of a data set')
  out['names'] = [str(n) for n in out['names']]
  try:
    said = [s.split('\t', 1) for s in arrays.get('said', np.zeros(0, str)).tolist()]
    out['said'] = [(int(level), message) for level, message in said]
  except ValueError as e:
    return _broken(path, f'its log lines: {e}')
  with contextlib.suppress(OSError):  # a folder shared read-only
    os.utime(path)  # used now: pruned last
  return out


def _broken(path: str, why) -> None:
  """Removes the broken entry at `path` (the images are decoded again); returns None."""
  logging.warning('Decoding the images again: %s is broken (%s); removed.', path, why)
  with contextlib.suppress(OSError):
    os.remove(path)


def write(folder: str, name: str, images, labels, groups, names, masks, said=()) -> None:
  """Writes entry `name` atomically (a temporary file, then a rename), then prunes the folder to
  `MAX_BYTES`. A data set larger than `MAX_BYTES` is not kept (it would crowd out every other),
  and a folder or disk that refuses it only logs a warning: a run never fails for it."""
  if images.nbytes > MAX_BYTES:
    logging.info(
      'Images not kept in %s: %d MB, over %d MB.', folder, images.nbytes >> 20, MAX_BYTES >> 20
    )
    return
  arrays = dict(images=images, labels=labels, groups=groups, names=np.asarray(names, dtype=str))
  arrays['said'] = np.asarray([f'{level}\t{message}' for level, message in said], dtype=str)
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
    if tmp is not None:
      with contextlib.suppress(OSError):
        os.remove(tmp)


def _prune(folder: str, keep: str) -> None:
  """Removes the least recently used entries (not `keep`) until the folder holds `MAX_BYTES`."""
  stale = time.time() - _STALE_TMP_S
  for path in glob.glob(os.path.join(folder, '.tmp-*')):  # left by a killed write
    with contextlib.suppress(OSError):
      if os.stat(path).st_mtime < stale:
        os.remove(path)
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
    with contextlib.suppress(OSError):  # removed meanwhile by another run
      os.remove(path)
    total -= size
