"""Readers: image files, Kaggle-style label CSVs and class-per-folder trees.

Every error names the file or the field at fault, so a user can fix their data without reading
this code.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from uadjax.data.preprocess import preprocess

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


class DataError(ValueError):
  """Bad input data; the message names the file or field."""


def read_image(path: str, size: int) -> np.ndarray:
  """Reads one image and preprocesses it: (size, size, 1) float32 in [0, 1]."""
  if not os.path.isfile(path):
    raise DataError(f'{path}: no such file.')
  if os.path.getsize(path) == 0:
    raise DataError(f'{path}: the file is empty (0 bytes).')
  try:
    with Image.open(path) as image:
      image.load()
      return preprocess(image, size)
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise DataError(f'{path}: cannot be decoded as an image ({e}).') from e


def list_images(folder: str) -> list[str]:
  """Image files directly in `folder`, sorted by name."""
  if not os.path.isdir(folder):
    raise DataError(f'{folder}: no such directory.')
  names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
  return [os.path.join(folder, n) for n in sorted(names)]


def read_label_csv(
  path: str, id_column: str = 'id', label_column: str = 'hemorrhage'
) -> dict[int, int]:
  """Reads a Kaggle head-CT style label file: `id, hemorrhage` rows, ids padded or not.

  Returns:
    {numeric id: label}. Header names are matched after stripping spaces.
  """
  if not os.path.isfile(path):
    raise DataError(f'{path}: label file not found.')
  with open(path, newline='') as f:
    rows = list(csv.reader(f))
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
  root: str, labels_file: str, size: int, id_column: str = 'id', label_column: str = 'hemorrhage'
):
  """Images named by numeric id (`000.png` or `0.png`) in `root`, labels from a CSV.

  Returns:
    (images (n, size, size, 1) float32, labels (n,) int32, names list[str]), sorted by id.
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
  images = np.stack([read_image(by_id[i], size) for i in ids])
  names = [os.path.basename(by_id[i]) for i in ids]
  return images, np.array([labels[i] for i in ids], np.int32), names


def load_class_folders(root: str, normal: Sequence[str], abnormal: Sequence[str], size: int):
  """One sub-folder per class: images of the `normal` folders get label 0, `abnormal` ones 1.

  Returns:
    (images, labels, names) with names relative to `root` ('Good/drimdb_good (1).jpg').
  """
  if not os.path.isdir(root):
    raise DataError(f'data.root={root!r}: no such directory.')
  images, labels, names = [], [], []
  for label, folders in ((0, normal), (1, abnormal)):
    for folder in folders:
      paths = list_images(os.path.join(root, folder))
      if not paths:
        raise DataError(f'{os.path.join(root, folder)}: no images in class folder {folder!r}.')
      for p in paths:
        images.append(read_image(p, size))
        labels.append(label)
        names.append(os.path.relpath(p, root))
  return np.stack(images), np.array(labels, np.int32), names
