"""Flax (linen) models of the study, and the registry that configs name them by."""

from uadjax.models.cae import CAE
from uadjax.models.dagmm import DAGMM
from uadjax.models.densenet import DenseNet
from uadjax.models.fanogan import FAnoGAN
from uadjax.models.intensity import IntensityHistogram
from uadjax.models.ssae import SSAE

# config.model_name -> module class; config.model holds its keyword arguments.
MODELS = {
  'cae': CAE,
  'ssae': SSAE,
  'dagmm': DAGMM,
  'densenet': DenseNet,  # the fundus study's supervised classifier (DenseNet121)
  # f-AnoGAN's two phases train the same module: 'wgan' (phase 1), 'fanogan' (the encoder).
  'wgan': FAnoGAN,
  'fanogan': FAnoGAN,
  # No training: the fraction of brain pixels in a band of intensities (a baseline).
  'intensity': IntensityHistogram,
}

__all__ = ['CAE', 'DAGMM', 'MODELS', 'SSAE', 'DenseNet', 'FAnoGAN', 'IntensityHistogram']
