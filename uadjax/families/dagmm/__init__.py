"""DAGMM: a compression network and a Gaussian mixture over its code and residual features."""

from uadjax.families.dagmm.model import DAGMM
from uadjax.families.dagmm.task import DAGMMTask

__all__ = ['DAGMM', 'DAGMMTask']
