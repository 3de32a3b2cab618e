"""Readers: image files (PNG, JPEG, ... and DICOM), Kaggle-style label CSVs and class-per-folder
trees.

DICOM files are read as their header says, through pydicom's own pixel pipeline:
  PALETTE COLOR  the colour lookup table (`apply_color_lut`), then as an RGB image;
  YBR_FULL(_422) converted to RGB (`convert_color_space`); RGB (and JPEG 2000's YBR_RCT / YBR_ICT,
                 which the codec has already turned into RGB) as it is;
  MONOCHROME1/2  the modality LUT or RescaleSlope / RescaleIntercept (`apply_modality_lut`), then
                 for CT (Modality 'CT') the CT window (brain: width 80, level 40 by default); for
                 any other modality the file's own VOI LUT or WindowCenter / WindowWidth
                 (`apply_voi_lut`) if it has one, else its 0.5-99.5 percentile range; to [0, 1],
                 inverted for MONOCHROME1 (which shows low values bright).
What was applied is `Frames.intensity` ('CT window W80 L40', 'file window W1600 L600',
'file VOI LUT', 'percentile 0.5-99.5', 'PALETTE COLOR -> RGB', ...), logged by the loaders and a
column of predict's CSV. Then the usual preprocessing. A multi-frame DICOM file holds one image
per frame (`read_frames`).

Every error names the file or the field at fault, so a user can fix their data without reading
this code; what deserves a second look (a blank image, a tiny one) is logged with the file's name.
A file with NaN or infinite pixels (a float TIFF, a DICOM file's float pixel data) is refused,
every such file of a set named at once (`NonFinitePixels`): no value is guessed for them, and
one NaN pixel would make the whole image NaN after its min-max rescale.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import os
import warnings
from collections.abc import Sequence

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError

from uadjax.data.preprocess import draft, preprocess

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
DICOM_EXTENSIONS = ('.dcm', '.dicom')
# (width, level) in Hounsfield units: the usual brain window of head CT.
BRAIN_WINDOW = (80.0, 40.0)
# The intensity range of a non-CT DICOM file that has no window of its own: robust to a few hot
# or dead pixels, which a plain min-max is not.
PERCENTILES = (0.5, 99.5)
# Below this many pixels a side, resizing to the model's size invents nearly all of the image.
MIN_SIDE = 8
# Lines of warnings one log message lists before it only counts the rest.
_MAX_LOGGED = 20


class NonFinitePixels(ValueError):
  """A file with NaN or infinite pixels; the message names it and counts them. `read_files`
  names every such file of a set in one `DataError`."""


class DataError(ValueError):
  """Bad input data; the message names the file or field."""


@dataclasses.dataclass(frozen=True)
class Frames:
  """Every image one file holds, read and preprocessed.

  Attributes:
    images: one (size, size, channels) float32 array in [0, 1] per image (one per frame of a
      multi-frame DICOM file).
    intensity: for a DICOM file, how its stored values became intensities (see the module
      docstring); '' for other image files.
    warnings: per image, what deserves a second look (blank, tiny), without the file's name.
  """

  images: list[np.ndarray]
  intensity: str = ''
  warnings: list[list[str]] = dataclasses.field(default_factory=list)


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


def _pixel_functions():
  """pydicom's pixel processing functions, from wherever this pydicom version keeps them."""
  try:
    from pydicom import pixels as p  # pydicom >= 3
  except ImportError:  # pydicom 2.x
    from pydicom.pixel_data_handlers import util as p
  return p


def _first(value) -> float:
  """The first value of a DICOM attribute that may hold several (WindowCenter: 40\\400)."""
  return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)


def _to_rgb8(rgb: np.ndarray, bits: int) -> list[Image.Image]:
  """(frames, h, w, 3) colour samples of `bits` bits each -> 8-bit RGB images."""
  scaled = np.round(rgb[..., :3].astype(np.float64) * (255 / (2**bits - 1)))
  return [Image.fromarray(f, 'RGB') for f in np.clip(scaled, 0, 255).astype(np.uint8)]


def _voi_lut_only(ds):
  """The first VOI LUT of `ds` alone, declared with 16-bit entries when it has 8-bit ones.

  pydicom (3.0.2) looks an 8-bit LUT up through uint8 indices, which wrap past entry 255: a
  4096-entry LUT of a 12-bit image maps pixel 256 as pixel 0. Declared 16-bit, the same
  numbers (read from the same US or OW data) are looked up through uint16 indices.
  """
  from pydicom.dataset import Dataset

  item = ds.VOILUTSequence[0]
  entries, first, bits = (int(v) for v in item.LUTDescriptor)
  lut = Dataset()
  lut.add(item['LUTData'])
  lut.add_new('LUTDescriptor', 'US', [entries, first, 16 if bits == 8 else bits])
  only = Dataset()
  only.VOILUTSequence = [lut]
  if hasattr(ds, 'file_meta'):
    only.file_meta = ds.file_meta  # the byte order of OW LUT data
  return only


def _monochrome(ds, pixels: np.ndarray, ct_window, p) -> tuple[list[np.ndarray], str]:
  """MONOCHROME1/2 frames (frames, h, w) -> [0, 1] float32 frames and what was applied."""
  values = p.apply_modality_lut(pixels, ds)
  # Valid as pydicom's apply_voi_lut judges it, which prefers the LUT to a window.
  lut = ds.get('VOILUTSequence')
  voi_lut = bool(lut) and None not in (lut[0].get('LUTDescriptor'), lut[0].get('LUTData'))
  file_window = ds.get('WindowCenter') is not None and ds.get('WindowWidth') is not None
  if str(ds.get('Modality', '')).strip().upper() == 'CT':
    # The run's CT window, not the file's: every CT image must look as the training images did.
    width, level = ct_window
    out = window(values.astype(np.float64), width, level)
    intensity = f'CT window W{width:g} L{level:g}'
  elif voi_lut or file_window:
    if voi_lut:
      # A VOI LUT maps integer inputs; its entries span the bits its descriptor gives.
      if not np.issubdtype(values.dtype, np.integer):
        values = np.round(values).astype(np.int64)
      out = p.apply_voi_lut(values, _voi_lut_only(ds)).astype(np.float64)
      lo, hi = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
      intensity = 'file VOI LUT'
    else:
      out = p.apply_voi_lut(values, ds)
      # The window maps onto a range pydicom derives from BitsStored and the rescale: its ends
      # are what the window gives far below and far above it.
      lo, hi = p.apply_voi_lut(np.array([-np.inf, np.inf]), ds)
      intensity = f'file window W{_first(ds.WindowWidth):g} L{_first(ds.WindowCenter):g}'
    out = np.clip((out - lo) / (hi - lo), 0.0, 1.0)
  else:
    out = np.empty(values.shape, np.float64)
    for k, frame in enumerate(values):
      lo, hi = np.percentile(frame, PERCENTILES)
      out[k] = np.clip((frame - lo) / (hi - lo), 0.0, 1.0) if hi > lo else 0.0
    intensity = f'percentile {PERCENTILES[0]:g}-{PERCENTILES[1]:g}'
  if str(ds.get('PhotometricInterpretation', '')).strip() == 'MONOCHROME1':
    # MONOCHROME1 shows low values bright; flip so that dense tissue is bright in every input.
    out = 1.0 - out
    intensity += ', inverted (MONOCHROME1)'
  return [f.astype(np.float32) for f in out], intensity


def _dicom_frames(path: str, ct_window: tuple[float, float]) -> tuple[list[Image.Image], str]:
  """The frames of one DICOM file as PIL images ('F' in [0, 1], or 'RGB') and their intensity."""
  import pydicom  # only DICOM input needs it

  try:
    ds = pydicom.dcmread(path)
  except Exception as e:  # pydicom raises many types (InvalidDicomError, EOFError, ...)
    raise DataError(f'{path}: cannot be read as DICOM ({type(e).__name__}: {e}).') from e
  modality = str(ds.get('Modality', '')).strip()
  if not any(k in ds for k in ('PixelData', 'FloatPixelData', 'DoubleFloatPixelData')):
    raise DataError(f'{path}: a DICOM file without pixel data (Modality {modality!r}).')
  try:
    if hasattr(ds, 'pixel_array_options'):
      # pydicom 3 turns YBR into RGB unless asked for the raw samples; pydicom 2 always gives
      # them raw. Raw in both, so that the colour conversion below is the only one.
      ds.pixel_array_options(raw=True)
    pixels = ds.pixel_array
  except Exception as e:  # missing decoders, truncated data, ... each its own type
    syntax = getattr(getattr(ds, 'file_meta', None), 'TransferSyntaxUID', None)
    syntax = getattr(syntax, 'name', syntax) or 'unknown transfer syntax'
    raise DataError(
      f'{path}: its pixel data cannot be decoded ({syntax}; {type(e).__name__}: {e}).'
    ) from e
  p = _pixel_functions()
  photometric = str(ds.get('PhotometricInterpretation', '')).strip()
  samples = int(ds.get('SamplesPerPixel', 1) or 1)
  if pixels.ndim == (2 if samples == 1 else 3):
    pixels = pixels[None]  # one frame: the same (frames, h, w[, samples]) layout as several
  try:
    if photometric == 'PALETTE COLOR':
      rgb = p.apply_color_lut(pixels, ds)
      bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
      return _to_rgb8(rgb, bits), 'PALETTE COLOR -> RGB'
    if samples == 3:
      bits = int(ds.get('BitsStored', 8) or 8)
      if photometric in ('YBR_FULL', 'YBR_FULL_422'):
        rgb = p.convert_color_space(pixels, photometric, 'RGB', per_frame=True)
        return _to_rgb8(rgb, bits), f'{photometric} -> RGB'
      if photometric in ('RGB', 'YBR_RCT', 'YBR_ICT'):
        # JPEG 2000's YBR_RCT / YBR_ICT: the codec undoes its own colour transform.
        return _to_rgb8(pixels, bits), 'RGB' if photometric == 'RGB' else f'{photometric} -> RGB'
      raise DataError(
        f'{path}: PhotometricInterpretation {photometric!r} is not supported '
        '(expected RGB, YBR_FULL, YBR_FULL_422, PALETTE COLOR, MONOCHROME1 or MONOCHROME2).'
      )
    frames, intensity = _monochrome(ds, pixels, ct_window, p)
  except DataError:
    raise
  except Exception as e:  # pydicom's LUT and window steps raise ValueError, KeyError, ...
    raise DataError(
      f'{path}: its pixels cannot be mapped to intensities (PhotometricInterpretation '
      f'{photometric!r}, Modality {modality!r}; {type(e).__name__}: {e}).'
    ) from e
  return [Image.fromarray(f, 'F') for f in frames], intensity


@contextlib.contextmanager
def _bomb_warnings_said_here():
  """PIL's unnamed DecompressionBombWarning off for the block: `_decoded` notes the file and
  its size instead. Entered once by the reading thread (warning filters are process-wide and
  `warnings.catch_warnings` is not thread-safe), around every worker's decoding."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', Image.DecompressionBombWarning)
    yield


def _decoded(path: str, size: int) -> tuple[Image.Image, list[str]]:
  """One image file decoded (at reduced scale where JPEG allows) and its size warnings."""
  notes = []
  try:
    # PIL's DecompressionBombWarning is silenced by the caller (`_bomb_warnings_said_here`):
    # it is said below with the file's name.
    with Image.open(path) as image:
      draft(image, size)
      image.load()
  except Image.DecompressionBombError as e:
    raise DataError(
      f'{path}: refused as a possible decompression bomb: {e} Set PIL.Image.MAX_IMAGE_PIXELS '
      'higher (None: no limit) before reading if the file is trusted.'
    ) from e
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise DataError(f'{path}: cannot be decoded as an image ({e}).') from e
  limit = Image.MAX_IMAGE_PIXELS
  if limit and image.width * image.height > limit:
    notes.append(
      f'{image.width}x{image.height} = {image.width * image.height} pixels, over '
      f'PIL.Image.MAX_IMAGE_PIXELS ({limit}): decoded anyway (refused above twice that)'
    )
  return image, notes


def read_file(
  path: str, size: int, dicom_window: tuple[float, float] = BRAIN_WINDOW, mode: str = 'gray'
) -> Frames:
  """`_read_file` (see there) with PIL's unnamed size warning replaced by a named note; a file
  with NaN or infinite pixels raises a DataError naming it."""
  return read_files([path], size, dicom_window, mode)[0]


def _read_file(
  path: str, size: int, dicom_window: tuple[float, float] = BRAIN_WINDOW, mode: str = 'gray'
) -> Frames:
  """Every image a file holds, preprocessed, with what was applied and what to check.

  Args:
    path: the file.
    size: output height and width.
    dicom_window: (width, level) in Hounsfield units, for CT DICOM files only.
    mode: the preprocessing (`uadjax.data.preprocess.MODES`).

  Returns:
    `Frames`: one image for PNG/JPEG/..., one per frame for DICOM.

  Raises:
    DataError: naming the file: missing, a directory, empty, undecodable, over PIL's pixel limit,
      or a DICOM file without (supported) pixel data.
  """
  if os.path.isdir(path):
    raise DataError(f'{path}: is a directory, not an image file.')
  if not os.path.isfile(path):
    raise DataError(f'{path}: no such file.')
  if os.path.getsize(path) == 0:
    raise DataError(f'{path}: the file is empty (0 bytes).')
  notes: list[str] = []
  if is_dicom(path):
    decoded, intensity = _dicom_frames(path, tuple(dicom_window))
  else:
    image, notes = _decoded(path, size)
    decoded, intensity = [image], ''
  _check_finite(path, decoded)
  width, height = decoded[0].size
  if min(width, height) < MIN_SIDE:
    notes.append(f'{width}x{height} pixels, smaller than {MIN_SIDE}x{MIN_SIDE}')
  images = [preprocess(d, size, mode) for d in decoded]
  if not all(np.isfinite(image).all() for image in images):
    # Finite pixels that overflow in a step (a DICOM rescale), caught before they go further.
    after = intensity or 'preprocessing'
    raise NonFinitePixels(f'{path}: pixels that are not finite after {after}')
  per_image = []
  for image in images:
    here = list(notes)
    if float(np.ptp(image, axis=(0, 1)).max()) <= 1e-6:  # one colour, whatever it is
      here.append('blank: every pixel has one value' + (f' after {intensity}' if intensity else ''))
    per_image.append(here)
  return Frames(images, intensity, per_image)


def _check_finite(path: str, decoded: list[Image.Image]) -> None:
  """Raises NonFinitePixels naming `path` if a decoded image (a float one: integer pixels are
  finite) holds NaN or infinite values."""
  nan = inf = total = 0
  for image in decoded:
    if image.mode != 'F':
      continue
    values = np.asarray(image)
    nan += int(np.isnan(values).sum())
    inf += int(np.isinf(values).sum())
    total += values.size
  if nan or inf:
    counts = ' and '.join(f'{n} {kind}' for n, kind in ((nan, 'NaN'), (inf, 'infinite')) if n)
    raise NonFinitePixels(f'{path}: {counts} of its {total} pixels')


def _refuse_non_finite(paths: Sequence[str], read) -> list[Frames]:
  """`read(paths)`: a `Frames` or a `NonFinitePixels` per path, in order; the files with
  non-finite pixels are named together in one DataError."""
  frames, bad = [], []
  for result in read(paths):
    if isinstance(result, NonFinitePixels):
      bad.append(str(result))
    else:
      frames.append(result)
  if len(bad) == 1:
    raise DataError(
      f'{bad[0]}: NaN or infinite pixels, which uadjax does not guess values for; fix or '
      'remove the file.'
    )
  if bad:
    shown = bad[:_MAX_LOGGED] + (
      [f'... and {len(bad) - _MAX_LOGGED} more'] if len(bad) > _MAX_LOGGED else []
    )
    raise DataError(
      f'{len(bad)} image file{"s" * (len(bad) > 1)} with NaN or infinite pixels, which uadjax '
      'does not guess values for; fix or remove them:\n  ' + '\n  '.join(shown)
    )
  return frames


def read_files(
  paths: Sequence[str],
  size: int,
  dicom_window: tuple[float, float] = BRAIN_WINDOW,
  mode: str = 'gray',
) -> list[Frames]:
  """`read_file` of each path, in order; the first file that fails raises its `DataError`, but
  the files with NaN or infinite pixels are all named in one.

  Image files are decoded on one thread per usable CPU core: PIL decodes without the GIL (the
  200 PNGs of the head-CT set: docs/performance.md, start-up). A folder with DICOM files is
  read in one thread (pydicom parses in Python, and its pixel decoders' thread safety is not
  promised)."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  workers = min(len(paths), cores or 1)

  def one(path):
    try:
      return _read_file(path, size, dicom_window, mode)
    except NonFinitePixels as e:
      return e

  def read(paths):
    if workers <= 1 or any(is_dicom(p) for p in paths):
      return [one(p) for p in paths]
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix='read') as pool:
      return list(pool.map(one, paths))

  with _bomb_warnings_said_here():
    return _refuse_non_finite(paths, read)


def read_frames(
  path: str, size: int, dicom_window: tuple[float, float] = BRAIN_WINDOW, mode: str = 'gray'
):
  """Every image a file holds, preprocessed: one for PNG/JPEG/..., one per frame for DICOM.

  Args:
    path: the file.
    size: output height and width.
    dicom_window: (width, level) in Hounsfield units, for CT DICOM files.
    mode: the preprocessing (`uadjax.data.preprocess.MODES`).

  Returns:
    A list of (size, size, channels) float32 arrays in [0, 1] (`read_file(...).images`).
  """
  return read_file(path, size, dicom_window, mode).images


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


def log_reads(where: str, reads: Sequence[tuple[str, Frames]]) -> None:
  """Logs what a set of reads needs a user to know, naming the files: how the DICOM files'
  intensities were set (a warning when they differ), and every image's warnings.

  Args:
    where: what was read (a folder), for the messages.
    reads: (name, its `Frames`) per file; a multi-frame file's warnings are named 'name#k'.
  """
  by_intensity = collections.defaultdict(list)
  lines = []
  for name, frames in reads:
    if frames.intensity:
      by_intensity[frames.intensity].append(name)
    for k, notes in enumerate(frames.warnings):
      label = f'{name}#{k}' if len(frames.images) > 1 else name
      lines += [f'{label}: {n}' for n in notes]
  if by_intensity:
    parts = [
      f'{kind}: {len(names)} file{"s" * (len(names) > 1)} (first {names[0]})'
      for kind, names in sorted(by_intensity.items())
    ]
    # Mixed intensities in one set usually mean a file that does not belong with the others.
    log = logging.warning if len(by_intensity) > 1 else logging.info
    log('DICOM intensities in %s: %s.', where, '; '.join(parts))
  if lines:
    more = len(lines) - _MAX_LOGGED
    shown = lines[:_MAX_LOGGED] + ([f'... and {more} more'] if more > 0 else [])
    logging.warning('%d images in %s to check:\n  %s', len(lines), where, '\n  '.join(shown))


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


def labels_path(root: str, labels_file: str) -> str:
  """Where `load_labelled_folder` reads the labels: `labels_file` as given when absolute,
  else under `root`."""
  return labels_file if os.path.isabs(labels_file) else os.path.join(root, labels_file)


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
  csv_path = labels_path(root, labels_file)
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
  names = [os.path.basename(by_id[i]) for i in ids]
  reads = []
  paths = [by_id[i] for i in ids]
  for path, name, frames in zip(
    paths, names, read_files(paths, size, dicom_window, mode), strict=True
  ):
    if len(frames.images) != 1:
      raise DataError(f'{path}: {len(frames.images)} frames where one image is expected.')
    reads.append((name, frames))
  log_reads(root, reads)
  images = np.stack([frames.images[0] for _, frames in reads])
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
  paths, path_labels = [], []
  for label, folders in ((0, normal), (1, abnormal), (2, extra)):
    for folder in folders:
      found = list_images(os.path.join(root, folder))
      if not found:
        raise DataError(f'{os.path.join(root, folder)}: no images in class folder {folder!r}.')
      paths += found
      path_labels += [label] * len(found)
  # One read of every class's files, so that a refusal names the bad files of all of them.
  images, labels, names, reads = [], [], [], []
  read = read_files(paths, size, dicom_window, mode)
  for p, label, frames in zip(paths, path_labels, read, strict=True):
    name = os.path.relpath(p, root)
    reads.append((name, frames))
    for k, frame in enumerate(frames.images):
      images.append(frame)
      labels.append(label)
      names.append(f'{name}#{k}' if len(frames.images) > 1 else name)
  log_reads(root, reads)
  return np.stack(images), np.array(labels, np.int32), names
