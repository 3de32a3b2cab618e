"""A trained run applied to new images: scores, decisions, a CSV and an anomaly-map overlay each.

Attributes:
  COMBINE: how the iterations' models are combined ('mean', 'vote').
  predict: scores every image under a folder with a run's models and writes the results.

Every file under the folder (PNG, JPEG, ..., DICOM; recursively) is read as the run's training
images were (DICOM as its header says: CT through the run's CT window, other modalities through
their own window or a percentile range, colour through its palette or colour space; one image
per frame; `uadjax.data.readers`). Each selected iteration's best checkpoint scores it, and:
  'mean': the score is the mean of the iterations' scores; abnormal iff it is >= the mean of
    their thresholds (each iteration's threshold was chosen on its own validation set);
  'vote': each iteration decides with its own threshold; abnormal iff at least half of them
    say so (a tie flags the image: missing an anomaly costs more than a second look).
A file that cannot be read (a directory, a broken file, one over PIL's pixel limit) gets a row
with its error; the others go on. Each row says how a DICOM file's intensities were set
(`intensity`) and what deserves a second look (`warning`: a blank or tiny image). The overlay
shows the anomaly map (the residual of the reconstruction models; a classifier's Grad-CAM for
class 1, averaged over the iterations).
"""

from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np
from absl import logging

from uadjax import data, inference
from uadjax.data import readers
from uadjax.data.readers import DataError

COMBINE = ('mean', 'vote')


def _overlay_name(name: str) -> str:
  """'sub/a.dcm#2' -> 'sub__a.dcm_2.png': one flat folder of overlays, names kept readable."""
  return name.replace(os.sep, '__').replace('#', '_') + '.png'


@dataclasses.dataclass
class _Read:
  """The images read from a folder: one entry per image (a multi-frame file gives several)."""

  names: list  # 'sub/a.dcm' or 'sub/a.dcm#2' (a frame)
  arrays: dict  # {size: [(size, size, c) float32]}: each image at each size a model takes
  notes: list  # {'intensity', 'warning'} per image
  errors: list  # {'file', 'error'} per file that could not be read


def _read_images(images_dir: str, files: list[str], sizes, shown: int, window, preprocess) -> _Read:
  """Every file at every size in `sizes` (`shown`: the size whose reads are logged); a file
  that cannot be read becomes an error row."""
  read_all = _Read([], {s: [] for s in sizes}, [], [])
  reads = []
  for path in files:
    rel = os.path.relpath(path, images_dir)
    try:
      read = {s: readers.read_file(path, s, window, preprocess) for s in sizes}
    except (DataError, ValueError) as e:
      read_all.errors.append({'file': rel, 'error': str(e)})
      logging.warning('Skipped %s', e)
      continue
    frames = read[shown]
    reads.append((rel, frames))
    for k, _ in enumerate(frames.images):
      read_all.names.append(f'{rel}#{k}' if len(frames.images) > 1 else rel)
      for s in sizes:
        read_all.arrays[s].append(read[s].images[k])
      read_all.notes.append(
        {'intensity': frames.intensity, 'warning': '; '.join(frames.warnings[k])}
      )
  readers.log_reads(images_dir, reads)
  return read_all


@dataclasses.dataclass
class _Decisions:
  """The iterations' scores of every image and the combined decision."""

  scores: np.ndarray  # (iterations, n)
  score: np.ndarray  # (n,) the mean over the iterations
  threshold: float  # the mean of the iterations' thresholds
  votes: np.ndarray  # (n,) how many iterations call each image abnormal
  abnormal: np.ndarray  # (n,) bool
  maps: np.ndarray | None  # (n, h, w) the overlays' maps (None: no overlays)
  map_name: str


def _decide(models, batch, images, combine: str, overlays: bool) -> _Decisions:
  """Scores `batch` with every model and combines the iterations ('mean' or 'vote')."""
  per_model = [m.score(batch) for m in models]
  scores = np.stack([s for s, _ in per_model])  # (iterations, n)
  maps, map_name = None, 'anomaly map'
  if models[0].supervised and overlays:
    # A classifier's score map is empty: its overlay shows Grad-CAM for class 1 (abnormal).
    maps = np.mean([m.class_maps(images, 'gradcam') for m in models], axis=0)
    map_name = 'Grad-CAM, class 1'
  elif overlays:
    maps = np.mean([mp for _, mp in per_model], axis=0)
  thresholds = np.array([m.threshold for m in models])
  votes = (scores >= thresholds[:, None]).sum(axis=0)
  score = scores.mean(axis=0)
  threshold = float(thresholds.mean())
  abnormal = score >= threshold if combine == 'mean' else 2 * votes >= len(models)
  return _Decisions(scores, score, threshold, votes, abnormal, maps, map_name)


def _rows(models, read: _Read, d: _Decisions, combine: str) -> list[dict]:
  """One CSV row per image; an image with a score that is not finite gets no decision."""
  finite = np.isfinite(d.scores)
  rows = []
  for i, name in enumerate(read.names):
    decision = 'abnormal' if d.abnormal[i] else 'normal'
    error = ''
    if not finite[:, i].all():
      # NaN compares false: without this the image would be called normal.
      bad = [f'{m.iteration:02d}' for j, m in enumerate(models) if not finite[j, i]]
      decision, error = '', f'score not finite (iteration {", ".join(bad)}): no decision'
      logging.warning('%s: %s', name, error)
    rows.append(
      {
        'file': name,
        'score': f'{d.score[i]:.6g}',
        'threshold': f'{d.threshold:.6g}' if combine == 'mean' else '',
        'decision': decision,
        'votes': f'{d.votes[i]}/{len(models)}',
        **read.notes[i],
        'error': error,
        **{f'score_iter_{m.iteration:02d}': f'{d.scores[j, i]:.6g}' for j, m in enumerate(models)},
      }
    )
  return rows


def _write_overlays(out: str, images, rows, d: _Decisions, combine: str, n_models: int) -> None:
  """An overlay PNG of each image's map, titled with its decision."""
  from uadjax.reports import images as image_figures  # matplotlib only when drawing

  for i, row in enumerate(rows):
    name = row['file']
    image_figures.save_overlay(
      images[i],
      d.maps[i],
      os.path.join(out, 'overlays', _overlay_name(name)),
      title=f'{name}: {row["decision"]} (score {d.score[i]:.4g}, {combine} of {n_models} '
      f'iterations, {d.votes[i]}/{n_models} vote abnormal)',
      map_name=d.map_name,
    )


def _write_csv(path: str, columns: list[str], rows: list[dict]) -> str:
  """Writes `rows` under `columns` to `path`, creating its folder; returns the path."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  return path


def predict(
  run: str,
  images_dir: str,
  out: str,
  combine: str = 'mean',
  iterations=None,
  dicom_window: tuple[float, float] | None = None,
  overlays: bool = True,
) -> dict:
  """Scores every image under `images_dir` with the run's models; writes `out/predictions.csv`
  and `out/overlays/*.png`.

  Args:
    run: the run folder (config.json, iter_XX/metrics.json and checkpoints/best).
    images_dir: a folder of images, searched recursively.
    out: the output folder.
    combine: 'mean' or 'vote' (see the module docstring).
    iterations: iteration indices to use (None: every finished one).
    dicom_window: (width, level) in HU for CT DICOM input (default: the run's, else brain W80
      L40); other modalities use their own window.
    overlays: whether to write an overlay PNG per image.

  Returns:
    {'csv': path, 'n_images', 'n_errors', 'n_abnormal', 'rows': the CSV rows as dicts}.

  Raises:
    DataError: the folder does not exist or holds no image file.
    inference.RunError: the run has no checkpoint, or one of another image size.
  """
  if combine not in COMBINE:
    raise ValueError(f'combine={combine!r}; expected one of {COMBINE}.')
  files = readers.find_images(images_dir)
  if not files:
    raise DataError(f'{images_dir}: no image files here (PNG, JPEG, BMP, TIFF or DICOM).')
  config = inference.load_config(run)
  models = inference.load_models(run, iterations, config)
  size = int(config.data.image_size)  # the size shown (a fused run's largest)
  # Each size a model takes (a fused run's members may take several): every file is read at each.
  sizes = sorted({size, *(s for m in models for s in m.image_sizes)})
  window = tuple(dicom_window or data.option(config.data, 'dicom_window'))
  preprocess = data.option(config.data, 'preprocess')
  read = _read_images(images_dir, files, sizes, size, window, preprocess)

  columns = ['file', 'score', 'threshold', 'decision', 'votes', 'intensity', 'warning', 'error']
  columns += [f'score_iter_{m.iteration:02d}' for m in models]
  rows = []
  if read.names:
    images = np.stack(read.arrays[size])
    batch = images if len(sizes) == 1 else {s: np.stack(a) for s, a in read.arrays.items()}
    decisions = _decide(models, batch, images, combine, overlays)
    rows = _rows(models, read, decisions, combine)
    if overlays:
      _write_overlays(out, images, rows, decisions, combine, len(models))
  unscored = sum(bool(r['error']) for r in rows)
  rows += [{c: r.get(c, '') for c in columns} for r in read.errors]
  rows.sort(key=lambda r: r['file'])
  csv_path = _write_csv(os.path.join(out, 'predictions.csv'), columns, rows)
  return {
    'csv': csv_path,
    'n_images': len(read.names),
    'n_errors': len(read.errors) + unscored,
    'n_abnormal': sum(r['decision'] == 'abnormal' for r in rows),
    'rows': rows,
  }
