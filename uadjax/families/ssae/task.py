"""The SSAE's task: the reconstruction task with the multi-scale error.

Score = sum_k lambda_k MSE(d_k, r_k) over the pyramid's scales; the map sums the scales'
residuals upsampled to full resolution; the training loss is the batch mean of that score.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from uadjax.families.cae.task import ReconstructionTask
from uadjax.families.ssae.model import up
from uadjax.nn.scores import residual_map


@dataclasses.dataclass(frozen=True)
class ScaleSpaceTask(ReconstructionTask):
  """The SSAE's task: the reconstruction task with the multi-scale error.

  Attributes:
    weights: lambda_k of each scale's MSE, finest first (study: all 1).
  """

  weights: tuple = (1.0, 1.0, 1.0)

  def errors(self, images, outputs):
    """Score sum_k lambda_k MSE(d_k, r_k) (n,); map sum_k lambda_k up(residual_k) (n, h, w)."""
    targets, recons = outputs['targets'], outputs['reconstructions']
    if len(self.weights) != len(recons):
      raise ValueError(f'task.weights has {len(self.weights)} entries for {len(recons)} scales.')
    scores, maps = 0.0, 0.0
    for w, t, r in zip(self.weights, targets, recons, strict=True):
      residual = residual_map(t, r)
      scores = scores + w * jnp.mean(residual, axis=(1, 2))
      # Bilinear up to full resolution: a coarse scale's residual covers the pixels it describes.
      maps = maps + w * up(residual[..., None], like=images)[..., 0]
    return scores, maps
