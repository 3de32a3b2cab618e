"""The head and brain masks of a phantom, and their clean-up."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from uadjax.data import phantoms
from uadjax.nn import masks


def test_the_head_mask_of_a_phantom_covers_its_skull_and_brain_and_not_the_background():
  images, _, _, _ = phantoms.make_phantoms(3, 3, 64, 0)
  x = images[..., 0]
  head = np.asarray(masks.head_mask(jnp.asarray(images)))
  brain = np.asarray(masks.brain_mask(jnp.asarray(images)))
  for k in range(len(x)):
    tissue = x[k] > 0.3  # skull (brightest) and brain; the background is noise near 0
    assert head[k][tissue].mean() > 0.99
    # The background: every pixel of the border and its corners stay out.
    assert not head[k][0].any() and not head[k][-1].any()
    assert not head[k][:, 0].any() and not head[k][:, -1].any()
    assert head[k].mean() < 0.7
    # The brain mask lies inside the head and leaves out the skull ring at the edge.
    assert not (brain[k] & ~head[k]).any()
    skull = head[k] & ~masks.erode(jnp.asarray(head[k][None]), 1)[0]
    assert not (brain[k] & np.asarray(skull)).any()


def test_the_largest_component_drops_specks_and_fill_holes_closes_the_ventricles():
  mask = np.zeros((1, 20, 20), bool)
  mask[0, 3:17, 3:17] = True
  mask[0, 8:12, 8:12] = False  # a hole
  mask[0, 0, 19] = True  # a speck
  largest = np.asarray(masks.largest_component(jnp.asarray(mask)))
  assert not largest[0, 0, 19] and largest[0, 3, 3]
  filled = np.asarray(masks.fill_holes(jnp.asarray(largest)))
  assert filled[0, 10, 10] and filled[0, 3:17, 3:17].all() and not filled[0, 0, 0]
