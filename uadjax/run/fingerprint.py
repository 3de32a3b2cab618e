"""The identity of a run's data: which images, with which labels and pixels.

`fingerprint(dataset, data_config)` hashes every image file's bytes (or, for the built-in
phantoms, the generated pixels) with its name and label; it is stored in the run's
config.json under `data_fingerprint`. A rerun over changed data is refused like a changed
config (`check_unchanged`), naming the images added, removed or changed. The study's rows are
shown only beside the study's own data: `is_study_data` compares with the fingerprint of the
Kaggle head-CT set the study used.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

# sha256 of the Kaggle head-CT set (`../shared/data/head_ct`: 200 PNGs and labels.csv), as
# `fingerprint` computes it. Raw file bytes, so it does not depend on the preprocessing.
STUDY_HEAD_CT_SHA256 = 'e9eec7ac0724a1ef17bd0b15302126f584bb84922cf0c75fdc2cebc8518d3fdc'

# Above this many images config.json keeps only the overall digest, not one per image.
MAX_LISTED = 20000


def _file_digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()[:16]


def fingerprint(dataset, data_config) -> dict:
  """{'n_images', 'sha256', 'images': {name: 'digest:label'}} of a loaded dataset.

  Args:
    dataset: a `uadjax.data.Dataset` (names relative to `data_config.root`; frame k of a
      multi-frame DICOM file is 'file.dcm#k').
    data_config: the run's `config.data`.
  """
  entries = {}
  if data_config.source == 'phantoms':
    digests = [
      hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16] for x in dataset.images
    ]
  else:
    root = os.path.expanduser(data_config.root)
    cache: dict[str, str] = {}
    digests = []
    for name in dataset.names:
      path = os.path.join(root, name.split('#')[0])
      if path not in cache:
        cache[path] = _file_digest(path)
      digests.append(cache[path])
  for name, digest, label in zip(dataset.names, digests, dataset.labels, strict=True):
    entries[name] = f'{digest}:{int(label)}'
  lines = '\n'.join(f'{n}\t{entries[n]}' for n in sorted(entries))
  out = {'n_images': len(entries), 'sha256': hashlib.sha256(lines.encode()).hexdigest()}
  if len(entries) <= MAX_LISTED:
    out['images'] = entries
  return out


def _names(names: list[str], limit: int = 5) -> str:
  more = f', ... ({len(names)} in all)' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


def differences(saved: dict, now: dict) -> str | None:
  """What changed between two fingerprints, in words; None if they are the same data."""
  if saved.get('sha256') == now.get('sha256'):
    return None
  old, new = saved.get('images'), now.get('images')
  if old is None or new is None:
    return f'{saved.get("n_images")} -> {now.get("n_images")} images, other pixels or labels'
  parts = []
  added = sorted(set(new) - set(old))
  removed = sorted(set(old) - set(new))
  common = sorted(set(old) & set(new))
  pixels = [n for n in common if old[n].split(':')[0] != new[n].split(':')[0]]
  labels = [n for n in common if old[n].split(':')[1] != new[n].split(':')[1]]
  if added:
    parts.append(f'{len(added)} images added ({_names(added)})')
  if removed:
    parts.append(f'{len(removed)} removed ({_names(removed)})')
  if pixels:
    parts.append(f'{len(pixels)} with other pixels ({_names(pixels)})')
  if labels:
    parts.append(f'{len(labels)} with other labels ({_names(labels)})')
  return '; '.join(parts) or 'the image list changed'


def is_study_data(recorded: dict | None) -> bool | None:
  """Whether a run's recorded fingerprint is the study's head-CT set; None when the run
  recorded none (runs written before fingerprints existed)."""
  if not recorded:
    return None
  return recorded.get('sha256') == STUDY_HEAD_CT_SHA256
