r"""Fundus image quality, supervised: DenseNet121 + a 2-class head, weighted cross-entropy.

  python -m experiments.fundus --config=configs/fundus/densenet.py --workdir=runs/densenet \
      --config.task.pretrained=densenet121_imagenet.npz
  on a CPU:   --config=configs/fundus/densenet.py:quick

The study: ImageNet-pretrained DenseNet121, SGD lr 1e-3, batch 64, 500 epochs, 224x224, the
stratified 60/20/20 split, the checkpoint with the lowest validation loss, ImageNet
normalisation. ImageNet weights cannot be downloaded here: give torchvision's as an .npz
(docs/models.md); without it the network trains from scratch, and the log and summary say so.
After training, the report draws the class-activation maps of the test images (`cam`).

Reported by the study on its UWF set (a reference, not a target, on DRIMDB): accuracy 0.75,
recall 0.66, precision 0.63, F1 0.64, specificity 0.80, AUC 0.86.
"""

from configs.fundus import common
from uadjax.evaluation.cam import METHODS


def get_config(arg=None):
  """The DenseNet121 config; `arg` is the variant list (see configs/fundus/common.py)."""
  variants = common.parse_variants(arg)
  config = common.fundus(arg)
  config.model_name = 'densenet'
  config.model = dict(
    growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, num_classes=2
  )
  config.task = dict(pretrained='', imagenet_norm=True)
  config.optimizer = dict(name='sgd', learning_rate=1e-3)
  config.study_row = 'densenet'
  config.study_note = 'DRIMDB; the study row is its private UWF set, a reference only'
  # Class-activation maps of the test images (report): methods, how many images, Score-CAM's
  # masked images per forward pass.
  config.cam = dict(methods=METHODS, max_images=0, scorecam_batch=32)  # 0 = every test image
  if 'quick' in variants:
    # 10 min measured on a 2-core CPU (training 6.5 min, the report's CAMs 3.5 min): 112x112
    # (a quarter of the study's pixels), 40 epochs, batch 16 (DRIMDB's 116 training images give
    # 7 steps an epoch, not 1 at batch 64), SGD with momentum 0.9 to make up for the few steps.
    config.data.image_size = 112
    config.train.batch_size = 16
    config.train.epochs = 40
    config.optimizer.learning_rate = 1e-2
    config.optimizer.momentum = 0.9
    config.cv.epochs_per_call = 5
    config.cv.checkpoint_every = 10
    config.cam.max_images = 8
  if 'tiny' in variants:
    config.model.growth_rate = 4
    config.model.block_config = (1, 1)
    config.model.num_init_features = 8
    config.cam.max_images = 2
    config.cam.scorecam_batch = 4
  return config
