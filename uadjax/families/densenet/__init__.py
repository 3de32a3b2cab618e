"""The supervised DenseNet121 classifier of the fundus study, with its class-activation maps."""

from uadjax.families.densenet.model import DenseNet
from uadjax.families.densenet.task import ClassifierTask

__all__ = ['ClassifierTask', 'DenseNet']
