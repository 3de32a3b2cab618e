"""Figures made of images: reconstructions and residuals, anomaly maps, overlays, sample grids.

Attributes:
  CATEGORIES: the four outcomes of a decision, in confusion-matrix order.
  plot_examples: test images by outcome (TN, FP, FN, TP) with reconstruction and residual.
  plot_anomaly_maps: the anomaly map over each abnormal test image, with the true lesion outline
    where it is known (phantoms).
  save_overlay: one image with its anomaly map over it, titled with score and decision.
  plot_image_grid: a grid of images (a GAN's samples).
  plot_extremes: per class, the test images with the lowest and the highest score.
  plot_cams: class-activation maps of several methods over their images.
  blend_heatmap: a [0, 1] map (a class-activation map) blended over its image, uint8 RGB.

All take preprocessed images, (n, h, w, c) or (n, h, w) floats in [0, 1], and maps (n, h, w);
like `figures`, they draw on Agg figures without pyplot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from uadjax.reports.figures import save_png

# (name, true label, predicted label), laid out as the confusion matrix: rows = truth.
CATEGORIES = (
  ('true negative', 0, 0),
  ('false positive', 0, 1),
  ('false negative', 1, 0),
  ('true positive', 1, 1),
)
MAP_CMAP = 'inferno'
MASK_COLOR = '#00e5ff'


def short_name(name: str, width: int = 22) -> str:
  """An image's name as a tile's title: its file name without the folders (a class folder's
  'pneumonia/person1_virus_6.jpeg' -> 'person1_virus_6.jpeg'), its middle elided past `width`
  characters so that neighbouring titles do not overlap."""
  name = str(name).replace('\\', '/').rsplit('/', 1)[-1]
  if len(name) <= width:
    return name
  keep = width - 1
  return name[: keep - keep // 2] + '…' + name[-(keep // 2) :]


def display(image) -> np.ndarray:
  """What imshow draws: (h, w) gray for one channel; RGB for three; two channels (the fundus
  f-AnoGAN's red and green) as RGB with an empty blue."""
  image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
  if image.ndim == 2:
    return image
  if image.shape[-1] == 1:
    return image[..., 0]
  if image.shape[-1] == 2:
    return np.concatenate([image, np.zeros_like(image[..., :1])], axis=-1)
  return image[..., :3]


def _show(ax, image) -> None:
  """Draws an image in [0, 1]: gray scale for one channel, colour otherwise."""
  ax.imshow(display(image), cmap='gray', vmin=0, vmax=1)


def _map_limit(maps) -> float:
  """One colour scale for the maps of a figure, so that brighter means a larger residual
  everywhere; the 99.5th percentile, so a few hot pixels do not wash out the rest."""
  maps = np.asarray(maps, np.float32)
  if maps.size == 0:
    return 1.0
  top = float(np.percentile(maps, 99.5))
  return top if top > 0 else float(maps.max()) or 1.0


def _off(ax) -> None:
  ax.set_xticks([])
  ax.set_yticks([])
  for spine in ax.spines.values():
    spine.set_visible(False)


def pick_examples(labels, scores, threshold, per_category: int) -> dict[str, np.ndarray]:
  """Indices of the most telling images of each outcome: the highest-scored positives and
  the lowest-scored negatives; for the errors, those furthest on the wrong side.

  Returns:
    {category name: indices}, at most `per_category` each.
  """
  labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
  predicted = (scores >= threshold).astype(int)
  out = {}
  for name, truth, pred in CATEGORIES:
    idx = np.flatnonzero((labels == truth) & (predicted == pred))
    # Predicted abnormal: highest scores first; predicted normal: lowest first.
    order = np.argsort(-scores[idx] if pred else scores[idx], kind='stable')
    out[name] = idx[order[:per_category]]
  return out


def _draw_cell(ax, column: str, header: bool, image, reconstructions, amap, k: int, vmax) -> None:
  """One cell of an image / reconstruction / map row; the column name above the first row."""
  if column == 'image':
    _show(ax, image)
  elif column == 'reconstruction':
    _show(ax, reconstructions[k])
  else:
    ax.imshow(amap, cmap=MAP_CMAP, vmin=0, vmax=vmax)
  if header:
    ax.set_xlabel(column, fontsize='x-small')
    ax.xaxis.set_label_position('top')


def plot_examples(
  images,
  reconstructions,
  maps,
  labels,
  scores,
  threshold: float,
  path,
  names: Sequence[str] | None = None,
  per_category: int = 3,
  title: str = '',
) -> str:
  """Test images by outcome: image, reconstruction and residual map, with score and decision.

  The four outcomes sit as in a confusion matrix (top: truly normal, bottom: truly abnormal;
  left: predicted normal, right: predicted abnormal). Residual maps share one colour scale.
  Every tile is part of one montage in one Axes (as `plot_anomaly_maps`), its titles text over
  the gaps: the 36 Axes of a subfigure grid took 0.58-0.79 s of a head-CT report's drawing, the
  montage 0.28-0.38 s.

  Args:
    images: (n, h, w[, c]) test images in [0, 1].
    reconstructions: (n, h, w[, c]) or None (a model without one: that column is left out).
    maps: (n, h, w) anomaly maps (per-pixel residuals), of the images' size.
    labels: (n,) 0 normal / 1 abnormal.
    scores: (n,) anomaly scores.
    threshold: the decision threshold (`score >= threshold` is abnormal).
    path: where the PNG goes.
    names: optional file names, shown above each image.
    per_category: images per outcome (at least 1).
    title: figure title.

  Returns:
    `path` as a string.
  """
  per_category = max(int(per_category), 1)
  picks = pick_examples(labels, scores, threshold, per_category)
  columns = ['image', 'reconstruction', 'residual'] if reconstructions is not None else None
  columns = columns or ['image', 'anomaly map']
  shown = np.concatenate([v for v in picks.values()]).astype(int)
  maps = np.asarray(maps, np.float32)
  vmax = _map_limit(maps[shown]) if shown.size else 1.0

  def tile(column: str, k: int) -> np.ndarray:
    if column == 'image':
      return _rgb(images[k])
    if column == 'reconstruction':
      return _rgb(reconstructions[k])
    return colormaps[MAP_CMAP](np.clip(maps[k] / max(vmax, 1e-12), 0, 1))[..., :3]

  # One montage per outcome (rows of images, a row title above each), then the four in a 2 x 2
  # canvas with room above each for its heading and the column names.
  h, w = _tile_shape(maps)
  quadrants = []
  for name, _, _ in CATEGORIES:
    idx = picks[name]
    cells = [
      tile(column, int(idx[row])) if row < len(idx) else None
      for row in range(per_category)
      for column in columns
    ]
    quadrants.append(
      tile_montage(cells, len(columns), title_lines=2, rows=per_category, tile_shape=(h, w))
    )
  quad_h, quad_w = quadrants[0][0].shape[:2]
  head, gap = max(4, round(0.42 * h)), max(2, round(0.22 * w))
  canvas = np.zeros((2 * (head + quad_h) + gap, 2 * quad_w + gap, 4), np.float32)
  corners = [(r * (head + quad_h + gap) + head, c * (quad_w + gap)) for r in (0, 1) for c in (0, 1)]
  for (montage, _), (y, x) in zip(quadrants, corners, strict=True):
    canvas[y : y + quad_h, x : x + quad_w] = montage

  aspect = canvas.shape[0] / canvas.shape[1]
  width = 2 * 1.45 * len(columns) + 0.6
  fig = Figure(figsize=(width, width * aspect + 0.6), layout='constrained')
  ax = fig.add_subplot()
  ax.set_axis_off()
  ax.imshow(canvas)
  for (name, _, _), (_, origins), (y, x) in zip(CATEGORIES, quadrants, corners, strict=True):
    idx = picks[name]
    ax.text(
      x + quad_w / 2, y - 0.55 * head, f'{name} ({len(idx)} shown)', fontsize=9,
      fontweight='bold', ha='center', va='bottom',
    )  # fmt: skip
    for c, column in enumerate(columns if len(idx) else ()):
      oy, ox = origins[c]
      ax.text(x + ox + (w - 1) / 2, y - 1, column, fontsize=6, ha='center', va='bottom')
    for row, k in enumerate(idx):
      oy, ox = origins[row * len(columns)]
      label = short_name(names[k]) if names is not None else f'#{k}'
      ax.text(
        x + ox + (w - 1) / 2, y + oy - 1.5, f'{label}\nscore {scores[k]:.4g}', fontsize=6,
        ha='center', va='bottom',
      )  # fmt: skip
    if not len(idx):
      ax.text(x + quad_w / 2, y + quad_h / 2, 'none', ha='center', va='center', color='0.4')
  fig.suptitle(
    (title + '\n' if title else '')
    + f'rows: truth (top normal, bottom abnormal); threshold {threshold:.4g}; '
    f'residual colour scale 0 to {vmax:.3g}',
    fontsize='small',
  )
  return save_png(fig, path)


def plot_anomaly_maps(
  images,
  maps,
  scores,
  threshold: float,
  path,
  masks=None,
  names: Sequence[str] | None = None,
  max_images: int = 50,
  columns: int = 10,
  title: str = '',
) -> str:
  """The anomaly map over each image (abnormal test images), highest score first.

  Each panel is the gray image with the map on top in `MAP_CMAP` (transparent where the map is
  low), titled with the score; a red title marks an image the threshold misses. With `masks`
  (phantoms), the true lesion outline is drawn in cyan.

  The panels are one montage in one Axes (`montage`), their titles text placed over its gaps:
  fifty Axes of their own took 1.4-1.5 s of the report's drawing, the montage 0.9 s (0.5 s with
  `_save`'s level-1 PNGs), measured on the head CT's 50 abnormal test images.

  Returns:
    `path` as a string.
  """
  scores = np.asarray(scores, np.float64)
  order = np.argsort(-scores, kind='stable')[:max_images]
  n = max(len(order), 1)
  cols = min(columns, n)
  vmax = _map_limit(np.asarray(maps)[order]) if len(order) else 1.0
  lines = 2 if names is not None else 1
  h, w = _tile_shape(maps)
  tiles = [overlay_rgb(images[k], maps[k], vmax) for k in order] or [None]  # None: no images
  montage, origins = tile_montage(tiles, cols, title_lines=lines, tile_shape=(h, w))
  aspect = montage.shape[0] / montage.shape[1]
  fig = Figure(figsize=(1.35 * cols, 1.35 * cols * aspect + 0.7), layout='constrained')
  ax = fig.add_subplot()
  ax.set_axis_off()
  ax.imshow(montage)
  if masks is not None:
    # One pixel of margin all round, so that a lesion at the montage's edge is outlined closed.
    outline = np.zeros((montage.shape[0] + 2, montage.shape[1] + 2), np.float32)
    for (y, x), k in zip(origins, order, strict=False):
      outline[y + 1 : y + 1 + h, x + 1 : x + 1 + w] = np.asarray(masks[k], np.float32)
    if outline.any():
      ys, xs = np.arange(-1, montage.shape[0] + 1), np.arange(-1, montage.shape[1] + 1)
      ax.contour(xs, ys, outline, levels=[0.5], colors=MASK_COLOR, linewidths=0.8)
      ax.set_xlim(-0.5, montage.shape[1] - 0.5)  # the margin is not shown
      ax.set_ylim(montage.shape[0] - 0.5, -0.5)
  for (y, x), k in zip(origins, order, strict=False):
    missed = scores[k] < threshold
    label = f'{short_name(names[k])}\n' if names is not None else ''
    ax.text(
      x + (w - 1) / 2,
      y - 1.5,
      f'{label}{scores[k]:.3g}',
      fontsize=6,
      ha='center',
      va='bottom',
      color='#d62728' if missed else 'black',
    )
  if not len(order):
    ((y, x),) = origins
    ax.text(x + w / 2, y + h / 2, 'no images', ha='center', va='center', color='0.4')
  fig.suptitle(
    (title + '\n' if title else '')
    + f'anomaly map over the image (colour scale 0 to {vmax:.3g}); red title: below threshold '
    f'{threshold:.4g}' + ('; cyan: true lesion' if masks is not None else ''),
    fontsize='small',
  )
  return save_png(fig, path)


def _tile_shape(maps) -> tuple[int, int]:
  """A montage's tile (h, w): the maps' (the images' size); (32, 32) when there are none."""
  maps = np.asarray(maps)
  return tuple(maps.shape[1:3]) if maps.ndim == 3 else (32, 32)


def _rgb(image) -> np.ndarray:
  """What `_show` draws, as (h, w, 3) floats in [0, 1] (gray repeated into each channel)."""
  base = display(image)
  return np.repeat(base[..., None], 3, axis=-1) if base.ndim == 2 else base


def overlay_rgb(image, amap, vmax: float) -> np.ndarray:
  """The image (gray or colour) with the map over it in `MAP_CMAP`, as (h, w, 3) floats in
  [0, 1]: the map's opacity grows with its value (0.85 at `vmax`), so normal tissue stays
  visible under a low residual."""
  base = _rgb(image)
  amap = np.asarray(amap, np.float32)
  scaled = np.clip(amap / max(vmax, 1e-12), 0, 1)
  alpha = (scaled * 0.85)[..., None]
  colour = colormaps[MAP_CMAP](scaled)[..., :3]
  return (1 - alpha) * base + alpha * colour


def tile_montage(
  tiles, cols: int, title_lines: int = 1, rows: int | None = None, tile_shape=None
) -> tuple[np.ndarray, list[tuple[int, int]]]:
  """Equal-sized (h, w, 3) tiles in a grid of `cols` columns, row by row, as one RGBA image
  whose gaps are transparent: a gap of 6 % of a tile between columns and, above each row, room
  for `title_lines` lines of small text. A None tile leaves its cell empty (transparent);
  `rows` (default: as many as the tiles fill) fixes the grid's height, `tile_shape` (h, w) the
  cells' (default: the first tile's that is not None). Returns the image and each tile's
  top-left (y, x), empty cells included."""
  h, w = tile_shape or next(t for t in tiles if t is not None).shape[:2]
  gap_x = max(1, round(0.06 * w))
  gap_y = max(2, round((0.16 * title_lines + 0.02) * h))
  rows = math.ceil(len(tiles) / cols) if rows is None else rows
  out = np.zeros((rows * (h + gap_y), cols * (w + gap_x) - gap_x, 4), np.float32)
  origins = []
  for i, tile in enumerate(tiles):
    y, x = (i // cols) * (h + gap_y) + gap_y, (i % cols) * (w + gap_x)
    origins.append((y, x))
    if tile is not None:
      out[y : y + h, x : x + w, :3] = tile
      out[y : y + h, x : x + w, 3] = 1.0
  return out, origins


def _draw_overlay(ax, image, amap, vmax: float, mask=None) -> None:
  ax.imshow(overlay_rgb(image, amap, vmax))
  if mask is not None and np.any(mask):
    ax.contour(np.asarray(mask, float), levels=[0.5], colors=MASK_COLOR, linewidths=0.8)


def save_overlay(
  image, amap, path, title: str = '', vmax: float | None = None, map_name: str = 'anomaly map'
) -> str:
  """One image with its anomaly map over it and, beside it, the map alone with a colour bar.

  Args:
    image: (h, w[, c]) in [0, 1].
    amap: (h, w) anomaly map.
    path: where the PNG goes.
    title: e.g. the file, its score and the decision.
    map_name: what the map is, for the panel titles (a classifier's: 'Grad-CAM, class 1').
    vmax: the top of the colour scale (default: the map's own 99.5th percentile).
  """
  vmax = _map_limit(amap) if vmax is None else vmax
  fig = Figure(figsize=(6, 3.4), layout='constrained')
  ax_overlay, ax_map = fig.subplots(1, 2)
  _draw_overlay(ax_overlay, image, amap, vmax)
  _off(ax_overlay)
  ax_overlay.set_title(f'image + {map_name}', fontsize='small')
  shown = ax_map.imshow(amap, cmap=MAP_CMAP, vmin=0, vmax=vmax)
  _off(ax_map)
  ax_map.set_title(map_name, fontsize='small')
  fig.colorbar(shown, ax=ax_map, shrink=0.8)
  if title:
    fig.suptitle(title, fontsize='small')
  return save_png(fig, path)


def plot_image_grid(images, path, title: str = '', columns: int = 8) -> str:
  """Images in a grid, gray, e.g. a generator's samples.

  Returns:
    `path` as a string.
  """
  n = max(len(images), 1)
  cols = min(columns, n)
  rows = math.ceil(n / cols)
  # One image is a grid already (a GAN phase's selected.png): drawn large, the title fits.
  cell = 1.2 if n > 1 else 4.0
  fig = Figure(figsize=(cell * cols, cell * rows + 0.4), layout='constrained')
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  for ax in axes:
    _off(ax)
  for ax, image in zip(axes, images, strict=False):
    _show(ax, image)
  if title:
    fig.suptitle(title, fontsize='small')
  return save_png(fig, path)


def blend_heatmap(image, heatmap, *, alpha: float = 0.5, cmap: str = 'jet') -> np.ndarray:
  """A map blended over its image: (H, W, 3) uint8 RGB, (1 - alpha) * image + alpha * colour.

  Args:
    image: (H, W), (H, W, 1) or (H, W, 3); floats in [0, 1] (undo the ImageNet normalisation
      first) or uint8.
    heatmap: (H, W) in [0, 1], e.g. one of `cam`'s maps.
    alpha: weight of the coloured map (pytorch-grad-cam's 1 - image_weight).
    cmap: a matplotlib colormap name.
  """
  image = np.asarray(image)
  if image.dtype == np.uint8:
    image = image.astype(np.float32) / 255
  image = np.clip(np.asarray(image, np.float32), 0, 1)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  heatmap = np.clip(np.asarray(heatmap, np.float32), 0, 1)
  if heatmap.shape != image.shape[:2]:
    raise ValueError(f'heatmap {heatmap.shape} does not match image {image.shape[:2]}')
  colour = colormaps[cmap](heatmap)[..., :3]
  blended = (1 - alpha) * image + alpha * colour
  return np.round(np.clip(blended, 0, 1) * 255).astype(np.uint8)


def pick_extremes(labels, scores) -> list[tuple[str, int]]:
  """(caption, index) of the lowest- and the highest-scored image of each class present."""
  labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
  out = []
  for label, name in ((0, 'normal'), (1, 'abnormal')):
    idx = np.flatnonzero(labels == label)
    if idx.size:
      out.append((f'{name}, lowest score', int(idx[np.argmin(scores[idx])])))
      out.append((f'{name}, highest score', int(idx[np.argmax(scores[idx])])))
  return out


def plot_extremes(
  images,
  reconstructions,
  maps,
  labels,
  scores,
  path,
  names: Sequence[str] | None = None,
  title: str = '',
) -> str:
  """For each class, the test image with the lowest and the highest score, with its
  reconstruction (when the model has one) and its difference map (one colour scale).

  Args as `plot_examples` (no threshold). Returns `path` as a string.
  """
  picks = pick_extremes(labels, scores)
  columns = ['image', 'reconstruction', 'difference'] if reconstructions is not None else None
  columns = columns or ['image', 'anomaly map']
  maps = np.asarray(maps, np.float32)
  vmax = _map_limit(maps[[k for _, k in picks]]) if picks else 1.0
  fig = Figure(
    figsize=(2.2 * len(columns) + 0.4, 2.3 * max(len(picks), 1) + 0.6), layout='constrained'
  )
  axes = fig.subplots(max(len(picks), 1), len(columns), squeeze=False)
  for row, (caption, k) in enumerate(picks):
    for col, ax in enumerate(axes[row]):
      _off(ax)
      _draw_cell(ax, columns[col], row == 0, images[k], reconstructions, maps[k], k, vmax)
      if col == 0:
        label = short_name(names[k]) if names is not None else f'#{k}'
        ax.set_title(f'{caption}\n{label}\nscore {scores[k]:.4g}', fontsize='x-small')
  fig.suptitle(
    (title + '\n' if title else '') + f'difference colour scale 0 to {vmax:.3g}', fontsize='small'
  )
  return save_png(fig, path)


def plot_cams(images, cams: dict, path, names: Sequence[str], captions: Sequence[str]) -> str:
  """Class-activation maps: one row per image, the image then one overlay per method.

  Args:
    images: (n, h, w, c) in [0, 1].
    cams: method name -> (n, h, w) maps in [0, 1].
    path: where the PNG goes.
    names: file names (row titles).
    captions: one line per image (label, P(poor), decision).
  """
  methods = list(cams)
  n = len(images)
  fig = Figure(figsize=(1.7 * (len(methods) + 1), 1.85 * max(n, 1) + 0.5), layout='constrained')
  axes = fig.subplots(max(n, 1), len(methods) + 1, squeeze=False)
  for i in range(n):
    _off(axes[i, 0])
    _show(axes[i, 0], images[i])
    axes[i, 0].set_title(f'{short_name(names[i])}\n{captions[i]}', fontsize='xx-small')
    for j, method in enumerate(methods):
      ax = axes[i, j + 1]
      _off(ax)
      ax.imshow(blend_heatmap(display(images[i]), cams[method][i]))
      if i == 0:
        ax.set_title(method, fontsize='small')
  fig.suptitle(
    'class-activation maps for class 1 (abnormal: poor quality); jet colours, red = high',
    fontsize='small',
  )
  return save_png(fig, path)
