"""A labelled image set in memory, built from `config.data`, with its duplicate groups."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging as std_logging
import os

import numpy as np
from absl import logging
from PIL import Image

from uadjax import io
from uadjax.data import phantoms, preprocess, readers, stored
from uadjax.data.readers import DataError
from uadjax.run import compilation_cache


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
  file the readers open (`_key`): a run's phases and the report written after it in the same
  process decode the files once, and a changed file is read again. Its arrays are read-only
  (one object serves every caller). Every data set decoded is also kept on disk, beside the
  compilation cache, under the same key and that of the code that decodes it
  (`uadjax.data.stored`): the next process reads the arrays instead of decoding the files,
  and logs again what the readers logged about them.

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
  entry = _entry(key)
  dataset = _read_stored(*entry) if entry else None
  if dataset is None:
    with _said_meanwhile() as said:
      dataset = read_dataset(data_config)
    if entry:
      d = dataset
      stored.write(*entry, d.images, d.labels, d.groups, d.names, d.masks, said)
  for array in (dataset.images, dataset.labels, dataset.groups, dataset.masks):
    if array is not None:
      array.flags.writeable = False
  _LAST_LOADED[:] = [(key, dataset)] if key is not None else []
  return dataset


def _key(data_config) -> str | None:
  """`io.files_digest` of `data_config`, of PIL's pixel limit (a reader refuses an image over
  twice it) and of every file `read_dataset` opens (`_files_read`); None (read, keep nothing)
  when one cannot be listed or read. Reading the bytes costs a small part of decoding them."""
  head = json.dumps(data_config.to_dict(), sort_keys=True, default=str)
  head += f'\nPIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}'
  try:
    paths = _files_read(data_config)
  except (DataError, OSError):
    return None  # `read_dataset` says what is wrong
  return io.files_digest([(path, path) for path in paths], head)


def _files_read(data_config) -> list[str]:
  """The files `load` reads for `data_config`, as the readers name them (symlinks, `..` and
  folders outside `data.root` followed as opening them follows them): the image files of the
  root ('folder_csv') or of each class folder ('class_folders'), and the labels file; none for
  the phantoms.

  Raises:
    DataError: a folder that does not exist.
  """
  c = data_config
  if c.get('source') not in ('folder_csv', 'class_folders') or not c.get('root'):
    return []
  root = os.path.expanduser(c.root)
  if c.source == 'folder_csv':
    return [*readers.list_images(root), readers.labels_path(root, c.get('labels_file') or '')]
  folders = [*c.normal_classes, *c.abnormal_classes, *option(c, 'extra_test_classes')]
  return [path for f in folders for path in readers.list_images(os.path.join(root, f))]


def _entry(key: str | None) -> tuple[str, str] | None:
  """(folder, name) of the on-disk entry (`uadjax.data.stored`) of the data set of `key`; None
  where nothing is kept (the cache is off, or a file could not be read for the key)."""

  folder = compilation_cache.data_dir()
  name = stored.key(key) if folder and key is not None else None
  return (folder, name) if name is not None else None


def _read_stored(folder: str, name: str) -> Dataset | None:
  """The data set that an earlier process kept as entry `name` in `folder`, or None; logs again
  what the readers logged while they decoded it."""
  saved = stored.read(folder, name)
  if saved is None:
    return None
  said = saved.pop('said')
  logging.info(
    'Images read from %s (decoded by an earlier run%s).',
    folder,
    ', which logged what follows' if said else '',
  )
  for level, message in said:
    std_logging.getLogger('absl').log(level, '%s', message)
  return Dataset(**saved)


@contextlib.contextmanager
def _said_meanwhile():
  """Collects (level, message) of what `uadjax.data`'s modules log meanwhile, INFO and above:
  the blank, tiny and oversized images and the DICOM intensities that a data set read back
  from the store must still tell its user about (`_read_stored` logs them again)."""
  said: list[tuple[int, str]] = []
  package = os.path.dirname(os.path.abspath(__file__)) + os.sep

  class Keep(std_logging.Handler):
    def emit(self, record):
      if record.levelno >= std_logging.INFO and os.path.abspath(record.pathname).startswith(
        package
      ):
        said.append((record.levelno, record.getMessage()))

  handler = Keep()
  logger = std_logging.getLogger('absl')  # absl.logging's own
  logger.addHandler(handler)
  try:
    yield said
  finally:
    logger.removeHandler(handler)


def read_dataset(data_config) -> Dataset:
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
