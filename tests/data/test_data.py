"""Phantoms, datasets and duplicate groups."""

import numpy as np
import pytest
from PIL import Image

from configs.headct import cae
from tests.helpers import requires_head_ct
from uadjax import data
from uadjax.data import dataset, phantoms


def test_phantoms_are_deterministic_and_masks_mark_abnormal_only():
  a = phantoms.make_phantoms(6, 4, 32, seed=3)
  b = phantoms.make_phantoms(6, 4, 32, seed=3)
  c = phantoms.make_phantoms(6, 4, 32, seed=4)
  np.testing.assert_array_equal(a[0], b[0])
  assert not np.array_equal(a[0], c[0])
  images, labels, masks, names = a
  assert images.shape == (10, 32, 32, 1) and images.dtype == np.float32
  assert images.min() >= 0 and images.max() <= 1
  assert labels.tolist() == [1] * 4 + [0] * 6
  assert all(masks[i].any() for i in range(4)) and not masks[4:].any()
  assert len(set(names)) == 10


def test_lesions_are_brighter_than_the_brain_around_them():
  images, _, masks, _ = phantoms.make_phantoms(0, 8, 64, seed=0)
  for image, mask in zip(images[..., 0], masks, strict=True):
    ring = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    ring[max(ys.min() - 3, 0) : ys.max() + 4, max(xs.min() - 3, 0) : xs.max() + 4] = True
    assert image[mask].mean() > image[ring & ~mask].mean()


def test_duplicate_groups_are_exact_pixel_matches():
  x = np.random.default_rng(0).random((5, 4, 4, 1)).astype(np.float32)
  x[3] = x[1]
  groups = dataset.duplicate_groups(x)
  assert groups.tolist() == [0, 1, 2, 1, 3]


def test_load_phantoms_from_config():
  config = cae.get_config('tiny,phantoms')
  ds = data.load(config.data)
  assert ds.images.shape[1:] == (32, 32, 1)
  assert ds.masks is not None and ds.duplicates() == []


def test_unknown_source_and_missing_root_are_named():
  config = cae.get_config('tiny')
  config.data.source = 'nifti'
  with pytest.raises(data.DataError, match="data.source='nifti'"):
    data.load(config.data)
  config.data.source = 'folder_csv'
  config.data.root = '/does/not/exist'
  with pytest.raises(data.DataError, match='/does/not/exist'):
    data.load(config.data)


@requires_head_ct
def test_real_set_has_the_known_duplicate():
  ds = data.load(cae.get_config('tiny').data)
  assert ['188.png', '189.png'] in ds.duplicates()


def test_identical_images_with_different_labels_name_the_files(tmp_path):
  # All-black exports: identical whatever their label, so no split can keep them apart.
  rng = np.random.default_rng(0)
  for i in range(12):
    pixels = np.zeros((20, 20), np.uint8) if i < 3 else rng.integers(0, 255, (20, 20), np.uint8)
    Image.fromarray(pixels).save(tmp_path / f'{i:03d}.png')
  labels = [1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
  (tmp_path / 'labels.csv').write_text(
    'id,hemorrhage\n' + ''.join(f'{i},{label}\n' for i, label in enumerate(labels))
  )
  config = cae.get_config('tiny')
  config.data.root = str(tmp_path)
  message = (
    r'Identical images carry different labels \(1 group\).*\n'
    r'  blank \(one value in every pixel\): 000.png \(label 1\), 001.png \(label 0\), '
    r'002.png \(label 0\)'
  )
  with pytest.raises(data.DataError, match=message):
    data.load(config.data)
  labels[1] = labels[2] = 1  # the same label: kept together, as any duplicates are
  (tmp_path / 'labels.csv').write_text(
    'id,hemorrhage\n' + ''.join(f'{i},{label}\n' for i, label in enumerate(labels))
  )
  assert data.load(config.data).duplicates() == [['000.png', '001.png', '002.png']]


def test_load_keeps_the_last_data_set_until_a_file_or_the_config_changes(tmp_path):
  rng = np.random.default_rng(1)
  for i in range(6):
    Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8)).save(tmp_path / f'{i:03d}.png')
  (tmp_path / 'labels.csv').write_text(
    'id,hemorrhage\n' + ''.join(f'{i},{i % 2}\n' for i in range(6))
  )
  config = cae.get_config('tiny')
  config.data.root = str(tmp_path)
  first = data.load(config.data)
  assert data.load(config.data) is first  # read once
  with pytest.raises(ValueError, match='read-only'):
    first.images[0, 0, 0, 0] = 1.0  # one object serves every caller: nobody may change it
  # The same size and, on a coarse clock, the same time: the bytes tell them apart.
  (tmp_path / 'labels.csv').write_text(
    'id,hemorrhage\n' + ''.join(f'{i},{1 - i % 2}\n' for i in range(6))
  )
  relabelled = data.load(config.data)
  assert relabelled is not first
  np.testing.assert_array_equal(relabelled.labels, 1 - first.labels)
  config.data.image_size = 16
  assert data.load(config.data).images.shape[1:3] == (16, 16)


def test_load_reads_again_when_a_labels_file_outside_the_root_changes(tmp_path):
  images = tmp_path / 'images'
  images.mkdir()
  rng = np.random.default_rng(2)
  for i in range(6):
    Image.fromarray(rng.integers(0, 255, (20, 20), np.uint8)).save(images / f'{i:03d}.png')
  labels = tmp_path / 'labels.csv'  # beside the root, named by an absolute path
  labels.write_text('id,hemorrhage\n' + ''.join(f'{i},{i % 2}\n' for i in range(6)))
  config = cae.get_config('tiny')
  config.data.root, config.data.labels_file = str(images), str(labels)
  first = data.load(config.data)
  labels.write_text('id,hemorrhage\n' + ''.join(f'{i},{1 - i % 2}\n' for i in range(6)))
  np.testing.assert_array_equal(data.load(config.data).labels, 1 - first.labels)
