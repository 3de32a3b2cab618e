"""The montages: the anomaly maps' overlay is the two layers it replaces, composited, tiles sit at
the origins returned (where the titles go), empty cells stay transparent, and the figures draw
with masks, names, an empty outcome and no images at all (both figures)."""

import numpy as np
import pytest
from matplotlib import colormaps

from uadjax.reports import images


def test_overlay_rgb_is_the_gray_image_under_a_zero_map_and_85_percent_colour_at_vmax():
  rng = np.random.default_rng(0)
  image = rng.random((6, 5, 1)).astype(np.float32)
  amap = np.zeros((6, 5), np.float32)
  amap[0, 0], amap[1, 1] = 2.0, 1.0  # above vmax (clipped) and at half of it
  out = images.overlay_rgb(image, amap, vmax=2.0)
  gray = np.repeat(image, 3, axis=-1)
  untouched = amap == 0
  np.testing.assert_allclose(out[untouched], gray[untouched], rtol=0, atol=1e-6)
  top = colormaps[images.MAP_CMAP](1.0)[:3]
  np.testing.assert_allclose(out[0, 0], 0.15 * gray[0, 0] + 0.85 * np.asarray(top), atol=1e-6)
  half = colormaps[images.MAP_CMAP](0.5)[:3]
  np.testing.assert_allclose(out[1, 1], 0.575 * gray[1, 1] + 0.425 * np.asarray(half), atol=1e-6)


@pytest.mark.parametrize('n,cols', [(1, 1), (7, 3), (9, 3)])
def test_montage_places_every_tile_at_its_origin_and_leaves_the_gaps_transparent(n, cols):
  tiles = [np.full((4, 5, 3), (k + 1) / 10, np.float32) for k in range(n)]
  montage, origins = images.tile_montage(tiles, cols, title_lines=2)
  assert len(origins) == n
  covered = np.zeros(montage.shape[:2], bool)
  for k, (y, x) in enumerate(origins):
    np.testing.assert_array_equal(montage[y : y + 4, x : x + 5, :3], tiles[k])
    covered[y : y + 4, x : x + 5] = True
  assert y > 0  # room for the titles above every row, the first too
  np.testing.assert_array_equal(montage[..., 3], covered.astype(np.float32))


def test_plot_anomaly_maps_draws_masks_names_and_no_images(tmp_path):
  rng = np.random.default_rng(1)
  imgs = rng.random((3, 8, 8, 1)).astype(np.float32)
  maps = rng.random((3, 8, 8)).astype(np.float32)
  masks = np.zeros((3, 8, 8), bool)
  masks[:, 2:5, 2:5] = True
  path = images.plot_anomaly_maps(
    imgs, maps, [0.3, 0.9, 0.1], 0.5, tmp_path / 'a.png', masks=masks, names=['a', 'b', 'c']
  )
  assert (tmp_path / 'a.png').stat().st_size > 0 and path.endswith('a.png')
  images.plot_anomaly_maps(imgs[:0], maps[:0], [], 0.5, tmp_path / 'none.png')
  assert (tmp_path / 'none.png').stat().st_size > 0


def test_montage_leaves_empty_cells_transparent_in_a_grid_of_fixed_rows():
  tile = np.full((4, 5, 3), 0.5, np.float32)
  montage, origins = images.tile_montage(
    [tile, None, None, None], 2, title_lines=1, rows=3, tile_shape=(4, 5)
  )
  assert len(origins) == 4 and montage.shape[0] == 3 * (origins[0][0] + 4)  # three rows
  (y, x) = origins[0]
  covered = np.zeros(montage.shape[:2], np.float32)
  covered[y : y + 4, x : x + 5] = 1.0
  np.testing.assert_array_equal(montage[..., 3], covered)
  # A grid of empty cells alone takes its size from tile_shape.
  empty, _ = images.tile_montage([None, None], 2, rows=1, tile_shape=(4, 5))
  assert empty.shape[1] == 2 * 5 + 1 and not empty.any()


def test_plot_examples_draws_every_outcome_an_empty_one_and_no_images(tmp_path):
  rng = np.random.default_rng(2)
  imgs = rng.random((6, 8, 8, 1)).astype(np.float32)
  maps = rng.random((6, 8, 8)).astype(np.float32)
  labels = np.array([0, 0, 0, 1, 1, 1])
  scores = np.array([0.1, 0.2, 0.7, 0.8, 0.9, 0.95])  # no false negative at 0.5
  assert len(images.pick_examples(labels, scores, 0.5, 3)['false negative']) == 0
  for recons in (imgs, None):
    path = images.plot_examples(
      imgs, recons, maps, labels, scores, 0.5, tmp_path / 'e.png', names=list('abcdef')
    )
    assert (tmp_path / 'e.png').stat().st_size > 0 and path.endswith('e.png')
  images.plot_examples([], None, [], [], [], 0.5, tmp_path / 'none.png')
  assert (tmp_path / 'none.png').stat().st_size > 0


def test_tile_titles_drop_the_folders_and_elide_long_names():
  assert images.short_name('pneumonia/person1610_virus_2793.jpeg') == 'person1610_…_2793.jpeg'
  assert images.short_name('sub/ct.dcm#2') == 'ct.dcm#2'
  assert len(images.short_name('x' * 80)) == 22
