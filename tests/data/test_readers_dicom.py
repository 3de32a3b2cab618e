"""DICOM read as its header says: each photometric interpretation, CT and non-CT modalities.

Every file is one bundled with pydicom (`get_testdata_file(..., download=False)`: the ones it
would download are out of reach here and in CI) or built in the test.
"""

import logging
import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from tests.helpers import multiframe_dicom
from uadjax.data import preprocess, readers

SIZE = 32
CT = get_testdata_file('CT_small.dcm', download=False)


def _bundled(name):
  path = get_testdata_file(name, download=False)
  assert path is not None, f'{name} is not bundled with this pydicom ({pydicom.__version__})'
  return path


def _raw(path):
  """The stored samples, as pydicom decodes them without any colour conversion."""
  ds = pydicom.dcmread(path)
  ds.pixel_array_options(raw=True)
  return ds, ds.pixel_array


def _gray(values, size=SIZE, mode='gray'):
  """What the preprocessing makes of one [0, 1] float frame."""
  return preprocess.preprocess(Image.fromarray(np.asarray(values, np.float32), 'F'), size, mode)


def _linear_window(x, center, width):
  """DICOM's LINEAR window (PS3.3 C.11.2.1.2.1) onto [0, 1]."""
  return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def test_palette_color_goes_through_its_lookup_table():
  path = _bundled('examples_palette.dcm')  # US, PALETTE COLOR, 16-bit palette entries
  ds, indices = _raw(path)
  rgb = (apply_color_lut(indices, ds)[..., :3] >> 8).astype(np.uint8)
  (image,) = readers.read_frames(path, SIZE)
  want = preprocess.preprocess(Image.fromarray(rgb, 'RGB'), SIZE)
  np.testing.assert_allclose(image, want, atol=0.01)
  # The indices themselves are not the picture: read as intensities they differ clearly.
  as_indices = _gray(indices.astype(np.float32) / 255)
  assert np.abs(image - as_indices).mean() > 0.05
  assert readers.read_file(path, SIZE).intensity == 'PALETTE COLOR -> RGB'


@pytest.mark.parametrize(
  'name, intensity',
  [
    ('SC_ybr_full_422_uncompressed.dcm', 'YBR_FULL_422 -> RGB'),
    ('SC_rgb_dcmtk_+eb+cy+n1.dcm', 'YBR_FULL -> RGB'),  # JPEG baseline, YCbCr inside
    ('SC_rgb_dcmtk_+eb+cr.dcm', 'RGB'),  # JPEG baseline, RGB inside
  ],
)
def test_colour_spaces_of_one_picture_read_alike(name, intensity):
  # The SC_rgb_* files hold one secondary-capture picture in several encodings.
  _, rgb = _raw(_bundled('SC_rgb_rle.dcm'))  # lossless RGB: the picture itself
  for mode in ('rgb', 'gray'):
    reference = preprocess.preprocess(Image.fromarray(rgb), SIZE, mode)
    (image,) = readers.read_frames(_bundled(name), SIZE, mode=mode)
    assert np.abs(image - reference).mean() < 0.02, mode
  assert readers.read_file(_bundled(name), SIZE).intensity == intensity
  assert readers.read_file(_bundled('SC_rgb_rle.dcm'), SIZE).intensity == 'RGB'


def test_a_colour_dicom_keeps_its_colours_for_an_rgb_model():
  path = _bundled('examples_rgb_color.dcm')  # US, RGB
  _, rgb = _raw(path)
  (image,) = readers.read_frames(path, SIZE, mode='rgb')
  np.testing.assert_allclose(image, preprocess.preprocess(Image.fromarray(rgb), SIZE, 'rgb'))
  assert not np.allclose(image[..., 0], image[..., 1])


def test_multi_frame_ybr_ultrasound_is_one_image_per_frame():
  path = _bundled('examples_ybr_color.dcm')  # US, YBR_FULL_422, 30 JPEG frames
  ds, ybr = _raw(path)
  images = readers.read_frames(path, SIZE, mode='rgb')
  assert len(images) == int(ds.NumberOfFrames) == 30
  rgb = convert_color_space(ybr[7], 'YBR_FULL_422', 'RGB')
  want = preprocess.preprocess(Image.fromarray(rgb), SIZE, 'rgb')
  np.testing.assert_allclose(images[7], want, atol=1 / 255)
  assert readers.read_file(path, SIZE).intensity == 'YBR_FULL_422 -> RGB'


def test_mr_uses_its_own_window_not_the_ct_window():
  path = _bundled('MR_small.dcm')  # MR, MONOCHROME2, WindowCenter 600, WindowWidth 1600
  ds, pixels = _raw(path)
  (image,) = readers.read_frames(path, SIZE)
  want = _gray(_linear_window(pixels.astype(np.float64), 600, 1600))
  np.testing.assert_allclose(image, want, atol=1e-5)
  # The CT window is for CT: another one leaves an MR image as it was.
  np.testing.assert_array_equal(readers.read_frames(path, SIZE, (400, 40))[0], image)
  frames = readers.read_file(path, SIZE)
  assert frames.intensity == 'file window W1600 L600' and frames.warnings == [[]]


def test_monochrome1_is_inverted_after_its_window():
  path = _bundled('6154')  # CR, MONOCHROME1, rescaled, WindowCenter 1600, WindowWidth 2800
  ds, pixels = _raw(path)
  assert ds.PhotometricInterpretation == 'MONOCHROME1' and ds.Modality == 'CR'
  values = pixels * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
  want = _gray(1.0 - _linear_window(values, 1600, 2800))
  np.testing.assert_allclose(readers.read_frames(path, SIZE)[0], want, atol=1e-5)
  intensity = readers.read_file(path, SIZE).intensity
  assert intensity == 'file window W2800 L1600, inverted (MONOCHROME1)'


@pytest.mark.parametrize('name', ['image_dfl.dcm', 'JPEG2000.dcm'])  # OT (8-bit), NM (16-bit)
def test_non_ct_without_a_window_uses_its_percentile_range(name):
  path = _bundled(name)
  ds, pixels = _raw(path)
  assert 'WindowCenter' not in ds and ds.Modality != 'CT'
  lo, hi = np.percentile(pixels.astype(np.float64), [0.5, 99.5])
  want = _gray(np.clip((pixels - lo) / (hi - lo), 0, 1))
  np.testing.assert_allclose(readers.read_frames(path, SIZE)[0], want, atol=1e-5)
  assert readers.read_file(path, SIZE).intensity == 'percentile 0.5-99.5'


def _mr(path, pixels, **attributes):
  """A one-frame 12-bit MR DICOM file with `attributes` set, written to `path`."""
  meta = FileMetaDataset()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  meta.MediaStorageSOPClassUID = MRImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  ds = Dataset()
  ds.file_meta = meta
  ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
  ds.Modality = 'MR'
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
  for key, value in attributes.items():
    setattr(ds, key, value)
  ds.PixelData = pixels.astype(np.uint16).tobytes()
  ds.save_as(path, enforce_file_format=True)
  return str(path)


def test_a_voi_lut_sequence_is_preferred_to_the_files_window(tmp_path):
  pixels = np.tile(np.linspace(0, 4095, 40).astype(np.uint16), (40, 1))
  curve = np.round(255 * np.sqrt(np.arange(4096) / 4095)).astype(np.uint16)
  item = Dataset()
  # Both are 'US or SS' / 'US or OW' in the dictionary: say which, so that they can be written.
  item.add_new('LUTDescriptor', 'US', [4096, 0, 8])
  item.add_new('LUTData', 'US', curve.tolist())
  path = _mr(tmp_path / 'lut.dcm', pixels, VOILUTSequence=[item], WindowCenter=100, WindowWidth=50)
  np.testing.assert_allclose(
    readers.read_frames(path, SIZE)[0], _gray(curve[pixels] / 255), atol=1e-5
  )
  assert readers.read_file(path, SIZE).intensity == 'file VOI LUT'


def test_ct_keeps_the_ct_window_whatever_window_the_file_suggests(tmp_path):
  ct = _bundled('CT_small.dcm')
  ds = pydicom.dcmread(ct)
  ds.WindowCenter, ds.WindowWidth = 300, 2000
  ds.save_as(tmp_path / 'windowed.dcm')
  windowed = str(tmp_path / 'windowed.dcm')
  np.testing.assert_array_equal(
    readers.read_frames(windowed, SIZE)[0], readers.read_frames(ct, SIZE)[0]
  )
  assert readers.read_file(windowed, SIZE).intensity == 'CT window W80 L40'
  blank = readers.read_file(ct, SIZE, dicom_window=(10, -3000))  # the whole image above it
  assert blank.warnings == [['blank: every pixel has one value after CT window W10 L-3000']]


def test_dicom_without_pixels_or_with_an_unknown_colour_space_is_named(tmp_path):
  report = _bundled('reportsi.dcm')  # a structured report: no image at all
  with pytest.raises(readers.DataError, match=r'reportsi.dcm: a DICOM file without pixel data'):
    readers.read_frames(report, SIZE)
  ds = pydicom.dcmread(_bundled('SC_rgb_small_odd.dcm'))
  ds.PhotometricInterpretation = 'HSV'
  ds.save_as(tmp_path / 'hsv.dcm')
  with pytest.raises(readers.DataError, match="hsv.dcm: PhotometricInterpretation 'HSV'"):
    readers.read_frames(str(tmp_path / 'hsv.dcm'), SIZE)


def test_loaders_log_the_intensities_and_warn_when_they_differ(tmp_path, caplog):
  for folder, name in (('normal', 'CT_small.dcm'), ('abnormal', 'MR_small.dcm')):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / name).write_bytes(open(_bundled(name), 'rb').read())
  (tmp_path / 'normal' / 'tiny.dcm').write_bytes(
    open(_bundled('SC_rgb_small_odd.dcm'), 'rb').read()
  )
  with caplog.at_level(logging.INFO):
    readers.load_class_folders(str(tmp_path), ['normal'], ['abnormal'], SIZE)
  mixed = [r for r in caplog.records if 'DICOM intensities' in r.getMessage()]
  assert len(mixed) == 1 and mixed[0].levelno == logging.WARNING
  message = mixed[0].getMessage()
  assert 'CT window W80 L40: 1 file (first normal/CT_small.dcm)' in message
  assert 'file window W1600 L600: 1 file (first abnormal/MR_small.dcm)' in message
  assert 'normal/tiny.dcm: 3x3 pixels, smaller than 8x8' in caplog.text


def test_dicom_to_hounsfield_then_window():
  ds = pydicom.dcmread(CT)
  hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
  width, level = 400.0, 40.0  # a wider window than the default, so few pixels clip
  expected = np.clip((hu - (level - width / 2)) / width, 0, 1).astype(np.float32)
  (image,) = readers.read_frames(CT, 32, dicom_window=(width, level))
  want = preprocess.preprocess(Image.fromarray(expected), 32)
  np.testing.assert_allclose(image, want, atol=1e-6)
  assert image.shape == (32, 32, 1) and image.min() == 0 and image.max() == 1
  # The brain window (W80 L40) is the default.
  np.testing.assert_array_equal(
    readers.read_frames(CT, 32)[0], readers.read_frames(CT, 32, dicom_window=(80, 40))[0]
  )


def test_class_folders_read_dicom_frames(tmp_path):
  for folder in ('normal', 'abnormal'):
    (tmp_path / folder).mkdir()
  shutil.copy(CT, tmp_path / 'normal' / 'one.dcm')
  multiframe_dicom(tmp_path / 'abnormal' / 'three.dcm')
  images, labels, names = readers.load_class_folders(str(tmp_path), ['normal'], ['abnormal'], 16)
  assert images.shape == (4, 16, 16, 1) and labels.tolist() == [0, 1, 1, 1]
  assert names == [
    'normal/one.dcm',
    'abnormal/three.dcm#0',
    'abnormal/three.dcm#1',
    'abnormal/three.dcm#2',
  ]
  with pytest.raises(readers.DataError, match='3 frames'):
    readers.read_image(str(tmp_path / 'abnormal' / 'three.dcm'), 16)
