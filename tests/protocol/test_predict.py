"""Using a trained run on new images: the predict entry point, DICOM input, and its errors."""

import csv
import json
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.helpers import REPO, env_without_gpu, multiframe_dicom
from uadjax import inference, predict
from uadjax.data import readers
from uadjax.data.phantoms import make_phantoms

CT = get_testdata_file('CT_small.dcm', download=False)  # bundled with pydicom: no download


@pytest.fixture(scope='module')
def images_dir(tmp_path_factory):
  """Two phantom PNGs (one in a sub-folder), a CT DICOM, a 3-frame DICOM without extension, and a
  broken file."""
  root = tmp_path_factory.mktemp('images')
  (root / 'sub').mkdir()
  images, *_ = make_phantoms(1, 1, 64, seed=3)
  for path, image in ((root / 'a.png', images[0]), (root / 'sub' / 'b.png', images[1])):
    Image.fromarray((image[..., 0] * 255).astype(np.uint8)).save(path)
  shutil.copy(CT, root / 'sub' / 'ct.dcm')
  multiframe_dicom(root / 'series')
  (root / 'broken.jpg').write_bytes(b'not a jpeg')
  return root


def _predict_cli(run, images, out, *flags):
  cmd = [
    sys.executable,
    '-m',
    'experiments.predict',
    f'--run={run}',
    f'--images={images}',
    f'--out={out}',
    *flags,
  ]
  return subprocess.run(
    cmd, cwd=REPO, env=env_without_gpu(), capture_output=True, text=True, timeout=300
  )


def test_predict_entry_point(tiny_run, images_dir, tmp_path):
  done = _predict_cli(tiny_run, images_dir, tmp_path / 'out')
  assert done.returncode == 0, done.stderr[-3000:]
  assert '6 images scored' in done.stdout and '1 files unreadable' in done.stdout
  with open(tmp_path / 'out' / 'predictions.csv') as f:
    rows = {r['file']: r for r in csv.DictReader(f)}
  assert sorted(rows) == [
    'a.png',
    'broken.jpg',
    'series#0',
    'series#1',
    'series#2',
    'sub/b.png',
    'sub/ct.dcm',
  ]
  assert 'cannot be decoded' in rows['broken.jpg']['error'] and rows['broken.jpg']['score'] == ''
  thresholds = [
    json.loads((tiny_run / f'iter_{i:02d}' / 'metrics.json').read_text())['threshold']['value']
    for i in (0, 1)
  ]
  for name, row in rows.items():
    if name == 'broken.jpg':
      continue
    per_iteration = [float(row['score_iter_00']), float(row['score_iter_01'])]
    assert float(row['score']) == pytest.approx(np.mean(per_iteration), rel=1e-5)
    assert float(row['threshold']) == pytest.approx(np.mean(thresholds), rel=1e-5)
    assert row['decision'] == (
      'abnormal' if float(row['score']) >= float(row['threshold']) else 'normal'
    )
  overlays = sorted(p.name for p in (tmp_path / 'out' / 'overlays').iterdir())
  assert overlays == [
    'a.png.png',
    'series_0.png',
    'series_1.png',
    'series_2.png',
    'sub__b.png.png',
    'sub__ct.dcm.png',
  ]
  # The frames differ (100 HU apart), so their scores do.
  assert len({rows[f'series#{k}']['score'] for k in range(3)}) == 3


def test_vote_and_a_single_iteration(tiny_run, images_dir, tmp_path):
  result = predict.predict(
    str(tiny_run), str(images_dir), str(tmp_path), combine='vote', iterations=[1], overlays=False
  )
  rows = [r for r in result['rows'] if not r['error']]
  assert all(r['votes'] in ('0/1', '1/1') for r in rows) and 'score_iter_00' not in rows[0]
  assert all((r['decision'] == 'abnormal') == (r['votes'] == '1/1') for r in rows)
  assert not (tmp_path / 'overlays').exists()


def test_clear_errors(tiny_run, images_dir, tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(readers.DataError, match='no image files'):
    predict.predict(str(tiny_run), str(tmp_path / 'empty'), str(tmp_path / 'o'))
  unfinished = tmp_path / 'unfinished'
  shutil.copytree(tiny_run, unfinished, ignore=shutil.ignore_patterns('checkpoints', 'report'))
  with pytest.raises(inference.RunError, match='no finished iteration with a checkpoint'):
    predict.predict(str(unfinished), str(images_dir), str(tmp_path / 'o'))
  resized = tmp_path / 'resized'
  shutil.copytree(tiny_run, resized, ignore=shutil.ignore_patterns('latest', 'report'))
  config = json.loads((resized / 'config.json').read_text())
  config['data']['image_size'] = 48
  (resized / 'config.json').write_text(json.dumps(config))
  with pytest.raises(inference.RunError, match=r'trained on images of shape \(32, 32, 1\)'):
    predict.predict(str(resized), str(images_dir), str(tmp_path / 'o'))


def _png_claiming(path, width, height):
  """A 1x1 PNG whose header claims width x height: PIL checks its pixel limit on the header."""
  Image.new('L', (1, 1)).save(path)
  data = bytearray(path.read_bytes())
  ihdr = b'IHDR' + struct.pack('>II', width, height) + bytes(data[24:29])
  data[12:29] = ihdr
  data[29:33] = struct.pack('>I', zlib.crc32(ihdr))
  path.write_bytes(bytes(data))


def test_an_image_over_the_pixel_limit_gets_an_error_row(tiny_run, tmp_path):
  scans = tmp_path / 'scans'
  scans.mkdir()
  images, *_ = make_phantoms(1, 0, 64, seed=5)
  Image.fromarray((images[0, ..., 0] * 255).astype(np.uint8)).save(scans / 'ok.png')
  _png_claiming(scans / 'bomb.png', 20000, 20000)  # 4e8 pixels, over twice PIL's default
  result = predict.predict(str(tiny_run), str(scans), str(tmp_path / 'out'), overlays=False)
  rows = {r['file']: r for r in result['rows']}
  assert result['n_images'] == 1 and result['n_errors'] == 1
  assert rows['ok.png']['score'] and not rows['ok.png']['error']
  assert rows['bomb.png']['score'] == ''
  assert 'bomb.png: refused as a possible decompression bomb' in rows['bomb.png']['error']
  assert '400000000 pixels' in rows['bomb.png']['error']


def test_predictions_say_how_each_dicom_was_read(tiny_run, tmp_path):
  scans = tmp_path / 'scans'
  scans.mkdir()
  for name in ('CT_small.dcm', 'MR_small.dcm', 'examples_palette.dcm'):
    shutil.copy(get_testdata_file(name, download=False), scans / name)
  Image.new('L', (40, 40)).save(scans / 'black.png')
  result = predict.predict(str(tiny_run), str(scans), str(tmp_path / 'out'), overlays=False)
  with open(result['csv']) as f:
    rows = {r['file']: r for r in csv.DictReader(f)}
  assert {name: row['intensity'] for name, row in rows.items()} == {
    'CT_small.dcm': 'CT window W80 L40',
    'MR_small.dcm': 'file window W1600 L600',
    'examples_palette.dcm': 'PALETTE COLOR -> RGB',
    'black.png': '',
  }
  assert rows['black.png']['warning'] == 'blank: every pixel has one value'
  assert rows['MR_small.dcm']['warning'] == '' and all(r['score'] for r in rows.values())
