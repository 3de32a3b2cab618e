"""A labelled image set in memory, built from `config.data`, with its duplicate groups."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
from absl import logging

from uadjax import io
from uadjax.data import phantoms, preprocess, readers, stored
from uadjax.data.readers import DataError


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Preprocessed images and what is known about them.

  Attributes:
    images: (n, size, size, channels) float32 in [0, 1].
    labels: (n,) int32: 0 normal, 1 abnormal, 2 a second abnormal class that is only tested
      (`data.extra_test_classes`; splits never use it, `uadjax.protocol` scores it beside the test
      normals).
    names: file names (or phantom ids), for reports.
    groups: (n,) int32; images with identical pixels share a group, and a split never puts one
      group on two sides.
    masks: (n, size, size) bool lesion masks where known (phantoms), else None.
  """

  images: np.ndarray
  labels: np.ndarray
  names: list[str]
  groups: np.ndarray
  masks: np.ndarray | None = None

  def duplicates(self) -> list[list[str]]:
    """Names of the images in each group of two or more identical images."""
    out = []
    for g in np.unique(self.groups):
      members = np.flatnonzero(self.groups == g)
      if len(members) > 1:
        out.append([self.names[i] for i in members])
    return out


def duplicate_groups(images: np.ndarray) -> np.ndarray:
  """Group ids by exact pixel content (of the preprocessed arrays), numbered by first occurrence."""
  seen: dict[bytes, int] = {}
  groups = np.empty(len(images), np.int32)
  for i, image in enumerate(images):
    digest = hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()
    groups[i] = seen.setdefault(digest, len(seen))
  return groups


def check_labels(images: np.ndarray, labels: np.ndarray, names: list[str], groups) -> None:
  """Raises a DataError naming the files when identical images carry different labels.

  One image cannot be both normal and abnormal; the usual cause is blank files (all black:
  a failed export), which are all identical whatever their label.
  """
  conflicts = []
  for g in np.unique(groups):
    members = np.flatnonzero(groups == g)
    if len(np.unique(labels[members])) > 1:
      conflicts.append(members)
  if not conflicts:
    return
  lines = []
  for members in conflicts[:5]:
    blank = float(np.ptp(images[members[0]], axis=(0, 1)).max()) == 0.0
    shown = ', '.join(f'{names[i]} (label {labels[i]})' for i in members[:8])
    more = f' and {len(members) - 8} more' if len(members) > 8 else ''
    lines.append(f'{"blank (one value in every pixel): " if blank else ""}{shown}{more}')
  more = f'\n  ... and {len(conflicts) - 5} more groups' if len(conflicts) > 5 else ''
  raise DataError(
    f'Identical images carry different labels ({len(conflicts)} group'
    f'{"s" * (len(conflicts) > 1)}); check these files or fix their labels:\n  '
    + '\n  '.join(lines)
    + more
  )


# The optional fields of `config.data`, with their defaults: the one place they are set (older
# runs' configs lack them; readers of a config ask `option`).
OPTIONAL = {
  'preprocess': 'gray',  # uadjax.data.preprocess.MODES
  'dicom_window': readers.BRAIN_WINDOW,  # (width, level) in HU, CT DICOM files only
  'extra_test_classes': (),  # class folders labelled 2: tested, never trained on
}


def option(data_config, name: str):
  """`data_config.<name>`, or its default (`OPTIONAL`) where the config has none."""
  return data_config.get(name, OPTIONAL[name])


def image_shape(data_config) -> tuple[int, int, int]:
  """(size, size, channels) of the images `data_config` preprocesses to."""
  size = int(data_config.image_size)
  return (size, size, preprocess.CHANNELS[option(data_config, 'preprocess')])


# The last data set `load` read, with its key (`_key`): [(key, Dataset)] or [].
_LAST_LOADED: list[tuple[str, Dataset]] = []


def load(data_config) -> Dataset:
  """Loads the dataset that `config.data` names.

  The last data set loaded stays in memory, keyed by `data_config` and the bytes of every
  file under `data.root` (`_key`): a run's phases and the report written after it in the same
  process decode the files once, and a changed file is read again. Its arrays are read-only
  (one object serves every caller). Every data set decoded is also kept on disk, beside the
  compilation cache, under the same key and that of the code that decodes it
  (`uadjax.data.stored`): the next process reads the arrays instead of decoding the files.

  `data_config.source`:
    'folder_csv': images named by id in `root`, labels in `root/labels_file` (Kaggle head CT);
    'class_folders': one sub-folder of `root` per class (`normal_classes`, `abnormal_classes`);
    either may hold DICOM files: CT ones windowed with `dicom_window` ((width, level) in HU,
    optional, default the brain window), others read as their header says (`readers`);
    'phantoms': the built-in synthetic head CTs (`phantoms.n_normal`, `.n_abnormal`, `.seed`).
  Optional: `preprocess` ('gray' by default; `uadjax.data.preprocess.MODES`) and, for
  'class_folders', `extra_test_classes` (folders labelled 2: tested, never trained on).

  Raises:
    DataError: naming the field or the files at fault, identical images with different labels
      among them (`check_labels`).
  """
  key = _key(data_config)
  last = _LAST_LOADED[0] if _LAST_LOADED else None  # read once: another thread may replace it
  if key is not None and last is not None and last[0] == key:
    return last[1]
  dataset = _read_stored(key)
  if dataset is None:
    dataset = _read(data_config)
    if key is not None:
      _store(key, dataset)
  for array in (dataset.images, dataset.labels, dataset.groups, dataset.masks):
    if array is not None:
      array.flags.writeable = False
  _LAST_LOADED[:] = [(key, dataset)] if key is not None else []
  return dataset


def _key(data_config) -> str | None:
  """`io.files_digest` of `data_config` and, for files, of each file under its root (walked as
  the readers walk it) and of a labels file outside it; None (read, keep nothing) when one
  cannot be read. Reading the bytes costs a small part of decoding them."""
  head = json.dumps(data_config.to_dict(), sort_keys=True, default=str)
  root = data_config.get('root') if data_config.get('source') != 'phantoms' else None
  if not root:
    return io.files_digest([], head)
  paths = io.files_under(os.path.expanduser(root))
  labels_file = data_config.get('labels_file')
  if labels_file and os.path.isabs(labels_file):  # readers.load_labelled_folder reads it there
    paths.append(labels_file)
  return io.files_digest([(path, path) for path in paths], head)


def _read_stored(key: str | None) -> Dataset | None:
  """The data set of `key` that an earlier process kept on disk, or None."""
  from uadjax import compilation_cache

  folder = compilation_cache.data_dir()
  name = stored.key(key) if folder and key is not None else None
  saved = stored.read(folder, name) if name is not None else None
  if saved is None:
    return None
  logging.info('Images read from %s (decoded by an earlier run).', folder)
  return Dataset(**saved)


def _store(key: str, dataset: Dataset) -> None:
  """Keeps `dataset`, just decoded, on disk for the next process (`uadjax.data.stored`)."""
  from uadjax import compilation_cache

  folder = compilation_cache.data_dir()
  name = stored.key(key) if folder else None
  if name is not None:
    d = dataset
    stored.write(folder, name, d.images, d.labels, d.groups, d.names, d.masks)


def _read(data_config) -> Dataset:
  """`load` without the memory: reads and preprocesses the files (or makes the phantoms)."""
  c = data_config
  size = int(c.image_size)
  mode = preprocess.check_mode(option(c, 'preprocess'))
  extra = tuple(option(c, 'extra_test_classes'))
  dicom_window = tuple(option(c, 'dicom_window'))
  masks = None
  if c.source == 'phantoms':
    images, labels, masks, names = phantoms.make_phantoms(
      c.phantoms.n_normal, c.phantoms.n_abnormal, size, c.phantoms.seed
    )
  elif c.source in ('folder_csv', 'class_folders'):
    if not c.root:
      raise DataError(f'data.source={c.source!r} needs data.root (set --config.data.root=PATH).')
    root = os.path.expanduser(c.root)
    if c.source == 'folder_csv':
      images, labels, names = readers.load_labelled_folder(
        root, c.labels_file, size, c.id_column, c.label_column, dicom_window, mode
      )
    else:
      images, labels, names = readers.load_class_folders(
        root,
        list(c.normal_classes),
        list(c.abnormal_classes),
        size,
        dicom_window,
        mode,
        extra,
      )
  else:
    raise DataError(
      f"data.source={c.source!r}; expected 'folder_csv', 'class_folders' or 'phantoms'."
    )
  groups = duplicate_groups(images)
  # Here, where the file names are known: the 2x5 splits refuse the same later by group id
  # only, and the hold-out split not at all.
  check_labels(images, labels, names, groups)
  return Dataset(images=images, labels=labels, names=names, groups=groups, masks=masks)
