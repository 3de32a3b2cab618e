"""Flax (linen) models of the study, and the registry that configs name them by."""

from uadjax.models.cae import CAE

# config.model_name -> module class; config.model holds its keyword arguments.
MODELS = {
  'cae': CAE,
}

__all__ = ['CAE', 'MODELS']
