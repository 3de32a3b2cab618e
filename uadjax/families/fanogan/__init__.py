"""f-AnoGAN: a WGAN-GP (its GAN phase, `phase`), then an encoder (izi, izi_f, ziz), scored."""

from uadjax.families.fanogan.model import FAnoGAN
from uadjax.families.fanogan.task import EncoderTask, WGANTask

__all__ = ['EncoderTask', 'FAnoGAN', 'WGANTask']
