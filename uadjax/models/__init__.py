"""Flax (linen) models of the study (which config name builds which: `uadjax.families`)."""

from uadjax.models.cae import CAE
from uadjax.models.dagmm import DAGMM
from uadjax.models.densenet import DenseNet
from uadjax.models.fanogan import FAnoGAN
from uadjax.models.features import PretrainedFeatures
from uadjax.models.intensity import IntensityHistogram
from uadjax.models.ssae import SSAE

__all__ = [
  'CAE',
  'DAGMM',
  'SSAE',
  'DenseNet',
  'FAnoGAN',
  'IntensityHistogram',
  'PretrainedFeatures',
]
