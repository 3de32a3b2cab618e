"""The convolutional autoencoder (CAE) of the study: its Flax module and its task."""

from uadjax.families.cae.model import CAE
from uadjax.families.cae.task import ReconstructionTask

__all__ = ['CAE', 'ReconstructionTask']
