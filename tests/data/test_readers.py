"""Readers: label CSVs, class folders, image decoding, and their error messages."""

import numpy as np
import pytest
from PIL import Image

from tests.helpers import HEAD_CT, fundus_like, requires_head_ct
from uadjax.data import preprocess, readers
from uadjax.data.readers import DataError


def _write_images(folder, names, size=(20, 24), mode='RGB'):
  rng = np.random.default_rng(0)
  for name in names:
    channels = {'RGB': 3, 'RGBA': 4, 'L': 1}[mode]
    arr = rng.integers(0, 255, (*size, channels), dtype=np.uint8)
    Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode).save(folder / name)


@pytest.mark.parametrize('padded', [True, False])
def test_label_csv_with_padded_or_plain_ids(tmp_path, padded):
  ids = ['000', '001', '002'] if padded else ['0', '1', '2']
  (tmp_path / 'labels.csv').write_text(
    'id, hemorrhage\n' + ''.join(f'{i},{label}\n' for i, label in zip(ids, (1, 0, 1), strict=True))
  )
  _write_images(tmp_path, ['000.png', '001.png', '002.png'])
  images, labels, names = readers.load_labelled_folder(str(tmp_path), 'labels.csv', 16)
  assert images.shape == (3, 16, 16, 1)
  assert labels.tolist() == [1, 0, 1] and names == ['000.png', '001.png', '002.png']


@pytest.mark.parametrize(
  'csv_text, message',
  [
    ('id, hemorrhage\n0,1\n0,0\n1,0\n', 'appears twice'),
    ('id, hemorrhage\n0,1\n1,2\n', 'label 2'),
    ('id, hemorrhage\n0,1\n', 'no label'),
    ('id, hemorrhage\n0,1\n1,0\n7,1\n', 'have no image'),
    ('name,label\n0,1\n', "no column 'id'"),
    ('id, hemorrhage\n0,yes\n', 'line 2'),
  ],
)
def test_label_csv_errors_name_the_problem(tmp_path, csv_text, message):
  (tmp_path / 'labels.csv').write_text(csv_text)
  _write_images(tmp_path, ['000.png', '001.png'])
  with pytest.raises(DataError, match=message):
    readers.load_labelled_folder(str(tmp_path), 'labels.csv', 16)


def test_empty_and_corrupt_images_are_named(tmp_path):
  (tmp_path / 'empty.png').write_bytes(b'')
  (tmp_path / 'junk.png').write_bytes(b'not an image at all')
  with pytest.raises(DataError, match='empty.png.*empty'):
    readers.read_image(str(tmp_path / 'empty.png'), 16)
  with pytest.raises(DataError, match='junk.png.*cannot be decoded'):
    readers.read_image(str(tmp_path / 'junk.png'), 16)


def test_missing_root_is_named(tmp_path):
  with pytest.raises(DataError, match='no such directory'):
    readers.load_labelled_folder(str(tmp_path / 'nope'), 'labels.csv', 16)


def test_class_folders_with_spaces_parentheses_and_formats(tmp_path):
  for folder, mode in (('Good', 'RGB'), ('Bad', 'RGBA')):
    (tmp_path / folder).mkdir()
    _write_images(tmp_path / folder, [f'img ({i}).png' for i in range(2)], mode=mode)
  _write_images(tmp_path / 'Good', ['photo (9).jpg'], mode='RGB')
  _write_images(tmp_path / 'Bad', ['scan.png'], mode='L')
  images, labels, names = readers.load_class_folders(str(tmp_path), ['Good'], ['Bad'], 8)
  assert images.shape == (6, 8, 8, 1)
  assert labels.tolist() == [0, 0, 0, 1, 1, 1]
  assert 'Good/photo (9).jpg' in names


def test_empty_class_folder_is_an_error(tmp_path):
  (tmp_path / 'Good').mkdir()
  (tmp_path / 'Bad').mkdir()
  _write_images(tmp_path / 'Good', ['a.png'])
  with pytest.raises(DataError, match='Bad.*no images'):
    readers.load_class_folders(str(tmp_path), ['Good'], ['Bad'], 8)


@requires_head_ct
def test_real_head_ct_reads_with_labels_by_id():
  images, labels, names = readers.load_labelled_folder(str(HEAD_CT), 'labels.csv', 64)
  assert images.shape == (200, 64, 64, 1)
  assert labels[:100].tolist() == [1] * 100 and labels[100:].tolist() == [0] * 100
  assert names[0] == '000.png' and np.isfinite(images).all()


def _two_labelled_images(folder):
  _write_images(folder, ['000.png', '001.png'])


def test_label_csv_saved_as_csv_utf8_with_a_byte_order_mark(tmp_path):
  (tmp_path / 'labels.csv').write_text('id,hemorrhage\n0,1\n1,0\n', encoding='utf-8-sig')
  _two_labelled_images(tmp_path)
  _, labels, names = readers.load_labelled_folder(str(tmp_path), 'labels.csv', 16)
  assert labels.tolist() == [1, 0] and names == ['000.png', '001.png']


def test_label_csv_that_is_not_utf8_is_named(tmp_path):
  (tmp_path / 'labels.csv').write_bytes('id,hémorrhage\n0,1\n1,0\n'.encode('cp1252'))
  _two_labelled_images(tmp_path)
  with pytest.raises(DataError, match=r'labels.csv: not UTF-8 text .*CSV UTF-8'):
    readers.load_labelled_folder(str(tmp_path), 'labels.csv', 16)


def test_a_directory_where_an_image_is_expected_is_named(tmp_path):
  (tmp_path / 'labels.csv').write_text('id,hemorrhage\n0,1\n5,0\n')
  _write_images(tmp_path, ['000.png'])
  (tmp_path / '005.png').mkdir()
  with pytest.raises(DataError, match=r'005.png: is a directory, not an image file'):
    readers.load_labelled_folder(str(tmp_path), 'labels.csv', 16)
  (tmp_path / 'Good').mkdir()
  (tmp_path / 'Good' / 'scan.jpg').mkdir()
  with pytest.raises(DataError, match=r'Good/scan.jpg: is a directory'):
    readers.load_class_folders(str(tmp_path), ['Good'], ['Good'], 16)


def test_an_image_over_pils_pixel_limit_is_a_named_error(tmp_path, monkeypatch):
  _write_images(tmp_path, ['big.png'], size=(100, 100))
  _write_images(tmp_path, ['large.png'], size=(40, 40))
  # PIL refuses above twice MAX_IMAGE_PIXELS and warns above it.
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
  with pytest.raises(DataError, match=r'big.png: refused as a possible decompression bomb.*10000'):
    readers.read_image(str(tmp_path / 'big.png'), 16)
  # Between the limit and twice it: read, and said, where PIL's warning names no file.
  frames = readers.read_file(str(tmp_path / 'large.png'), 16)
  assert frames.warnings == [
    [
      '40x40 = 1600 pixels, over PIL.Image.MAX_IMAGE_PIXELS (1000): decoded anyway '
      '(refused above twice that)'
    ]
  ]


def test_blank_and_tiny_images_are_named(tmp_path, caplog):
  (tmp_path / 'Good').mkdir()
  (tmp_path / 'Bad').mkdir()
  _write_images(tmp_path / 'Good', ['fine.png'])
  _write_images(tmp_path / 'Good', ['small.png'], size=(5, 9))
  Image.new('L', (30, 30)).save(tmp_path / 'Bad' / 'black.png')
  Image.new('RGB', (30, 30), (200, 10, 10)).save(tmp_path / 'Bad' / 'red.png')
  with caplog.at_level('WARNING'):
    readers.load_class_folders(str(tmp_path), ['Good'], ['Bad'], 16)
  assert '3 images in' in caplog.text
  assert 'Good/small.png: 9x5 pixels, smaller than 8x8' in caplog.text
  assert 'Bad/black.png: blank: every pixel has one value' in caplog.text
  assert 'Bad/red.png: blank' in caplog.text and 'fine.png' not in caplog.text
  for mode in ('gray', 'rgb'):  # one colour is blank, whether or not the colour is kept
    assert readers.read_file(str(tmp_path / 'Bad' / 'red.png'), 16, mode=mode).warnings == [
      ['blank: every pixel has one value']
    ]
  assert readers.read_file(str(tmp_path / 'Good' / 'fine.png'), 16).warnings == [[]]


def test_large_jpeg_is_decoded_at_reduced_scale_with_the_same_result(tmp_path):
  yy, xx = np.mgrid[:1600, :2000]
  img = np.stack([(xx / 2000) * 255, (yy / 1600) * 255, np.full_like(xx, 30.0)], -1)
  path = tmp_path / 'big.jpg'
  Image.fromarray(img.astype(np.uint8)).save(path, quality=95)
  with Image.open(path) as im:
    preprocess.draft(im, 64)
    assert im.size == (250, 200)  # 1/8: the smallest DCT scale with both sides >= 128
  fast = readers.read_image(str(path), 64, mode='rgb')
  with Image.open(path) as im:
    im.load()
    full = preprocess.preprocess(im, 64, 'rgb')
  assert np.abs(fast - full).max() < 0.03


def test_class_folders_label_the_extra_class_two(tmp_path):
  root = fundus_like(tmp_path / 'd', 5, 3, 2)
  images, labels, names = readers.load_class_folders(
    str(root), ['Good'], ['Bad'], 16, mode='rg_percentile', extra=['Outlier']
  )
  assert images.shape == (10, 16, 16, 2)
  assert labels.tolist() == [0] * 5 + [1] * 3 + [2] * 2
  assert names[-1].startswith('Outlier/Outlier (')
