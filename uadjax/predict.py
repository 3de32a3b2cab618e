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

  names, notes, rows_of_errors, reads = [], [], [], []
  arrays = {s: [] for s in sizes}
  for path in files:
    rel = os.path.relpath(path, images_dir)
    try:
      read = {s: readers.read_file(path, s, window, preprocess) for s in sizes}
    except (DataError, ValueError) as e:
      rows_of_errors.append({'file': rel, 'error': str(e)})
      logging.warning('Skipped %s', e)
      continue
    frames = read[size]
    reads.append((rel, frames))
    for k, _ in enumerate(frames.images):
      names.append(f'{rel}#{k}' if len(frames.images) > 1 else rel)
      for s in sizes:
        arrays[s].append(read[s].images[k])
      notes.append({'intensity': frames.intensity, 'warning': '; '.join(frames.warnings[k])})
  readers.log_reads(images_dir, reads)

  columns = ['file', 'score', 'threshold', 'decision', 'votes', 'intensity', 'warning', 'error']
  columns += [f'score_iter_{m.iteration:02d}' for m in models]
  rows = []
  if names:
    images = np.stack(arrays[size])
    batch = images if len(sizes) == 1 else {s: np.stack(a) for s, a in arrays.items()}
    per_model = [m.score(batch) for m in models]
    scores = np.stack([s for s, _ in per_model])  # (iterations, n)
    map_name = 'anomaly map'
    if models[0].supervised and overlays:
      # A classifier's score map is empty: its overlay shows Grad-CAM for class 1 (abnormal).
      maps = np.mean([m.class_maps(images, 'gradcam') for m in models], axis=0)
      map_name = 'Grad-CAM, class 1'
    else:
      maps = np.mean([mp for _, mp in per_model], axis=0)
    thresholds = np.array([m.threshold for m in models])
    votes = (scores >= thresholds[:, None]).sum(axis=0)
    score = scores.mean(axis=0)
    threshold = float(thresholds.mean())
    if combine == 'mean':
      abnormal = score >= threshold
    else:
      abnormal = 2 * votes >= len(models)
    os.makedirs(out, exist_ok=True)
    if overlays:
      from uadjax.reports import images as image_figures  # matplotlib only when drawing

    finite = np.isfinite(scores)
    for i, name in enumerate(names):
      decision = 'abnormal' if abnormal[i] else 'normal'
      error = ''
      if not finite[:, i].all():
        # NaN compares false: without this the image would be called normal.
        bad = [f'{m.iteration:02d}' for j, m in enumerate(models) if not finite[j, i]]
        decision, error = '', f'score not finite (iteration {", ".join(bad)}): no decision'
        logging.warning('%s: %s', name, error)
      rows.append(
        {
          'file': name,
          'score': f'{score[i]:.6g}',
          'threshold': f'{threshold:.6g}' if combine == 'mean' else '',
          'decision': decision,
          'votes': f'{votes[i]}/{len(models)}',
          **notes[i],
          'error': error,
          **{f'score_iter_{m.iteration:02d}': f'{scores[j, i]:.6g}' for j, m in enumerate(models)},
        }
      )
      if overlays:
        image_figures.save_overlay(
          images[i],
          maps[i],
          os.path.join(out, 'overlays', _overlay_name(name)),
          title=f'{name}: {decision} (score {score[i]:.4g}, {combine} of {len(models)} '
          f'iterations, {votes[i]}/{len(models)} vote abnormal)',
          map_name=map_name,
        )
  unscored = sum(bool(r['error']) for r in rows)
  rows += [{c: r.get(c, '') for c in columns} for r in rows_of_errors]
  rows.sort(key=lambda r: r['file'])
  os.makedirs(out, exist_ok=True)
  csv_path = os.path.join(out, 'predictions.csv')
  with open(csv_path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
  return {
    'csv': csv_path,
    'n_images': len(names),
    'n_errors': len(rows_of_errors) + unscored,
    'n_abnormal': sum(r['decision'] == 'abnormal' for r in rows),
    'rows': rows,
  }
