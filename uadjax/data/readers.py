"""Readers: image files (PNG, JPEG, ... and DICOM), Kaggle-style label CSVs and class-per-folder
trees.

DICOM files go through pydicom: pixel data to Hounsfield units with RescaleSlope and
RescaleIntercept, then a window (brain: width 80, level 40 by default) to [0, 1], then the usual
preprocessing. A multi-frame DICOM file holds one image per frame (`read_frames`).

Every error names the file or the field at fault, so a user can fix their data without reading
this code.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from uadjax.data.preprocess import draft, preprocess

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
DICOM_EXTENSIONS = ('.dcm', '.dicom')
# (width, level) in Hounsfield units: the usual brain window of head CT.
BRAIN_WINDOW = (80.0, 40.0)


class DataError(ValueError):
  """Bad input data; the message names the file or field."""


def is_dicom(path: str) -> bool:
  """True for a `.dcm`/`.dicom` file, or any file with the DICOM preamble ('DICM' at byte 128)."""
  if path.lower().endswith(DICOM_EXTENSIONS):
    return True
  try:
    with open(path, 'rb') as f:
      head = f.read(132)
  except OSError:
    return False
  return len(head) == 132 and head[128:] == b'DICM'


def window(hu: np.ndarray, width: float, level: float) -> np.ndarray:
  """Hounsfield units to [0, 1] through the window [level - width/2, level + width/2]."""
  if width <= 0:
    raise ValueError(f'DICOM window width {width}: must be positive.')
  return np.clip((hu - (level - width / 2)) / width, 0.0, 1.0).astype(np.float32)


def _dicom_frames(path: str, window_wl: tuple[float, float]) -> list[np.ndarray]:
  """The windowed frames of one DICOM file, each (h, w) float32 in [0, 1]."""
  import pydicom  # only DICOM input needs it

  try:
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.astype(np.float64)
  except Exception as e:  # pydicom raises many types (InvalidDicomError, missing handlers, ...)
    raise DataError(f'{path}: cannot be read as DICOM ({type(e).__name__}: {e}).') from e
  frames = int(getattr(ds, 'NumberOfFrames', 1) or 1)
  colour = int(getattr(ds, 'SamplesPerPixel', 1) or 1) > 1
  if frames == 1:
    pixels = pixels[None]
  if colour:
    # Screenshots and secondary captures: one gray channel, as for an RGB PNG.
    pixels = pixels.mean(axis=-1)
  slope = float(getattr(ds, 'RescaleSlope', 1.0) or 1.0)
  intercept = float(getattr(ds, 'RescaleIntercept', 0.0) or 0.0)
  hu = pixels * slope + intercept
  out = [window(frame, *window_wl) for frame in hu]
  if str(getattr(ds, 'PhotometricInterpretation', '')) == 'MONOCHROME1':
    # MONOCHROME1 shows low values bright; flip so that dense tissue is bright in every input.
    out = [1.0 - frame for frame in out]
  return out


def read_frames(
  path: str, size: int, dicom_window: tuple[float, float] = BRAIN_WINDOW, mode: str = 'gray'
):
  """Every image a file holds, preprocessed: one for PNG/JPEG/..., one per frame for DICOM.

  Args:
    path: the file.
    size: output height and width.
    dicom_window: (width, level) in Hounsfield units, for DICOM files.
    mode: the preprocessing (`uadjax.data.preprocess.MODES`).

  Returns:
    A list of (size, size, channels) float32 arrays in [0, 1].
  """
  if os.path.isdir(path):
    raise DataError(f'{path}: is a directory, not an image file.')
  if not os.path.isfile(path):
    raise DataError(f'{path}: no such file.')
  if os.path.getsize(path) == 0:
    raise DataError(f'{path}: the file is empty (0 bytes).')
  if is_dicom(path):
    frames = _dicom_frames(path, tuple(dicom_window))
    return [preprocess(Image.fromarray(np.asarray(f, np.float32)), size, mode) for f in frames]
  try:
    with Image.open(path) as image:
      draft(image, size)
      image.load()
      return [preprocess(image, size, mode)]
  except Image.DecompressionBombError as e:
    raise DataError(
      f'{path}: refused as a possible decompression bomb: {e} Set PIL.Image.MAX_IMAGE_PIXELS '
      'higher (None: no limit) before reading if the file is trusted.'
    ) from e
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise DataError(f'{path}: cannot be decoded as an image ({e}).') from e


def read_image(
  path: str, size: int, dicom_window: tuple[float, float] = BRAIN_WINDOW, mode: str = 'gray'
):
  """Reads one image and preprocesses it: (size, size, channels) float32 in [0, 1].

  A multi-frame DICOM file is refused here (it is several images); see `read_frames`.
  """
  frames = read_frames(path, size, dicom_window, mode)
  if len(frames) != 1:
    raise DataError(f'{path}: {len(frames)} frames where one image is expected.')
  return frames[0]


def list_images(folder: str) -> list[str]:
  """Image files (DICOM included) directly in `folder`, sorted by name.

  An entry with an image's name that is a directory is listed too: reading it then says so,
  where skipping it would report a missing image.
  """
  if not os.path.isdir(folder):
    raise DataError(f'{folder}: no such directory.')
  names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS + DICOM_EXTENSIONS)]
  return [os.path.join(folder, n) for n in sorted(names)]


def find_images(folder: str) -> list[str]:
  """Every candidate image under `folder`, recursively, sorted: files with an image or DICOM
  extension, and files without an extension (DICOM series often have none; one that is not an
  image fails when read, with its own error). Hidden files and folders are skipped."""
  if not os.path.isdir(folder):
    raise DataError(f'{folder}: no such directory.')
  out = []
  for parent, dirs, files in os.walk(folder):
    dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
    for name in files:
      ext = os.path.splitext(name)[1].lower()
      if name.startswith('.'):
        continue
      if ext in IMAGE_EXTENSIONS + DICOM_EXTENSIONS or not ext:
        out.append(os.path.join(parent, name))
  return sorted(out)


def read_label_csv(
  path: str, id_column: str = 'id', label_column: str = 'hemorrhage'
) -> dict[int, int]:
  """Reads a Kaggle head-CT style label file: `id, hemorrhage` rows, ids padded or not.

  The file is UTF-8, with or without the byte-order mark that spreadsheets write ("CSV UTF-8").

  Returns:
    {numeric id: label}. Header names are matched after stripping spaces.
  """
  if not os.path.isfile(path):
    raise DataError(f'{path}: label file not found.')
  try:
    # utf-8-sig: Excel's "CSV UTF-8" starts with a BOM, which would glue itself to 'id'.
    with open(path, newline='', encoding='utf-8-sig') as f:
      rows = list(csv.reader(f))
  except UnicodeDecodeError as e:
    raise DataError(
      f'{path}: not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r}); '
      'save it as "CSV UTF-8".'
    ) from e
  if not rows:
    raise DataError(f'{path}: the label file is empty.')
  header = [h.strip() for h in rows[0]]
  for col in (id_column, label_column):
    if col not in header:
      raise DataError(f'{path}: no column {col!r} in the header {header}.')
  i_id, i_label = header.index(id_column), header.index(label_column)
  labels: dict[int, int] = {}
  for line, row in enumerate(rows[1:], start=2):
    if not any(cell.strip() for cell in row):
      continue
    try:
      key, value = int(row[i_id].strip()), int(row[i_label].strip())
    except (ValueError, IndexError) as e:
      raise DataError(f'{path}, line {line}: cannot read id and label from {row}.') from e
    if value not in (0, 1):
      raise DataError(f'{path}, line {line}: label {value} for id {key}; expected 0 or 1.')
    if key in labels:
      raise DataError(f'{path}, line {line}: id {key} appears twice.')
    labels[key] = value
  return labels


def load_labelled_folder(
  root: str,
  labels_file: str,
  size: int,
  id_column: str = 'id',
  label_column: str = 'hemorrhage',
  dicom_window: tuple[float, float] = BRAIN_WINDOW,
  mode: str = 'gray',
):
  """Images named by numeric id (`000.png`, `0.png` or `000.dcm`) in `root`, labels from a CSV.

  Returns:
    (images (n, size, size, channels) float32, labels (n,) int32, names list[str]), sorted by
    id; `mode` is the preprocessing (`uadjax.data.preprocess.MODES`).
  """
  if not os.path.isdir(root):
    raise DataError(f'data.root={root!r}: no such directory.')
  csv_path = labels_file if os.path.isabs(labels_file) else os.path.join(root, labels_file)
  labels = read_label_csv(csv_path, id_column, label_column)
  by_id: dict[int, str] = {}
  for path in list_images(root):
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.isdigit():
      if int(stem) in by_id:
        raise DataError(f'{path}: id {int(stem)} has two image files ({by_id[int(stem)]}).')
      by_id[int(stem)] = path
  missing = sorted(set(labels) - set(by_id))
  if missing:
    raise DataError(
      f'{csv_path}: {len(missing)} ids have no image in {root} (first: {missing[:5]}).'
    )
  unlabelled = sorted(set(by_id) - set(labels))
  if unlabelled:
    raise DataError(
      f'{csv_path}: {len(unlabelled)} images in {root} have no label '
      f'(first: {[by_id[i] for i in unlabelled[:5]]}).'
    )
  ids = sorted(labels)
  images = np.stack([read_image(by_id[i], size, dicom_window, mode) for i in ids])
  names = [os.path.basename(by_id[i]) for i in ids]
  return images, np.array([labels[i] for i in ids], np.int32), names


def load_class_folders(
  root: str,
  normal: Sequence[str],
  abnormal: Sequence[str],
  size: int,
  dicom_window: tuple[float, float] = BRAIN_WINDOW,
  mode: str = 'gray',
  extra: Sequence[str] = (),
):
  """One sub-folder per class: images of the `normal` folders get label 0, `abnormal` ones 1,
  `extra` ones 2 (a second abnormal class kept out of training and validation, tested apart:
  DRIMDB's `Outlier/`).

  Returns:
    (images (n, size, size, channels) float32, labels (n,) int32, names) with names relative to
    `root` ('Good/drimdb_good (1).jpg'); frame k of a multi-frame DICOM file is named
    'folder/file.dcm#k'.
  """
  if not os.path.isdir(root):
    raise DataError(f'data.root={root!r}: no such directory.')
  images, labels, names = [], [], []
  for label, folders in ((0, normal), (1, abnormal), (2, extra)):
    for folder in folders:
      paths = list_images(os.path.join(root, folder))
      if not paths:
        raise DataError(f'{os.path.join(root, folder)}: no images in class folder {folder!r}.')
      for p in paths:
        frames = read_frames(p, size, dicom_window, mode)
        for k, frame in enumerate(frames):
          images.append(frame)
          labels.append(label)
          name = os.path.relpath(p, root)
          names.append(f'{name}#{k}' if len(frames) > 1 else name)
  return np.stack(images), np.array(labels, np.int32), names
