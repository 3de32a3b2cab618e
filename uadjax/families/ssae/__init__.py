"""The scale-space autoencoder (SSAE): a CAE per Laplacian-pyramid scale, and its task."""

from uadjax.families.ssae.model import SSAE
from uadjax.families.ssae.task import ScaleSpaceTask

__all__ = ['SSAE', 'ScaleSpaceTask']
