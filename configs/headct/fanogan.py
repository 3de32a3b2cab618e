r"""f-AnoGAN on head CT, 2x5 cross-validation: a WGAN-GP, then its encoder (izi_f), one command.

  python -m experiments.cross_validate --config=configs/headct/fanogan.py --workdir=runs/fanogan
  on a CPU:   --config=configs/headct/fanogan.py:quick   (the lighter 'dcgan' networks)
  for tests:  --config=configs/headct/fanogan.py:tiny
  one iteration, another encoder variant:
              --config.cv.iterations=0 --config.task.variant=ziz   (izi | izi_f | ziz)

The top level is the encoder phase (study: best validation AUC over 3000 epochs, F1 threshold);
`gan` is phase 1 (WGAN-GP, selected every `select_every` epochs by the sliced Wasserstein
distance to the training images: the study's Inception FID needs a download). A rerun resumes
whichever phase was interrupted (uadjax/fanogan_cv.py).

Expected (study): test AUC 0.87 ± 0.06, accuracy 0.86 ± 0.02, F1 0.91 ± 0.01.
"""

from configs.headct import common


def get_config(arg=None):
  """The f-AnoGAN config; `arg` is the variant list (see configs/headct/common.py)."""
  variants = common.parse_variants(arg)
  config = common.headct(arg)
  config.model_name = 'fanogan'
  config.model = dict(
    arch='resnet',  # the original f-AnoGAN 64x64 networks | 'dcgan' (lighter)
    latent_dim=128,
    dim=64,
    image_size=config.data.image_size,
  )
  # Encoder phase.
  config.task = dict(variant='izi_f', kappa=1.0)
  config.optimizer = dict(name='adam', learning_rate=1e-4, b1=0.5, b2=0.999)
  config.train.epochs = 3000  # validation every cv.val_every = 10 epochs (common)
  # GAN phase.
  config.gan = dict(
    epochs=5000,
    select_every=100,
    epochs_per_call=100,
    checkpoint_every=500,
    samples=36,  # images per sample grid
    task=dict(n_critic=5, gp_weight=10.0, n_select=64, swd_levels=3, swd_patch=7),
    # 'rmsprop' is the other choice (optimizer.name).
    optimizer=dict(name='adam', learning_rate=1e-4, b1=0.0, b2=0.9),
  )
  if 'quick' in variants:
    config.model.arch = 'dcgan'
    config.model.dim = 32
    # About 3 min an iteration on a 2-core CPU: 2000 critic and 400 generator steps, then 400
    # encoder steps.
    config.gan.epochs = 1000
    config.gan.select_every = 100
    config.gan.epochs_per_call = 100
    config.gan.checkpoint_every = 200
    config.train.epochs = 200
    config.cv.epochs_per_call = 50
    config.cv.checkpoint_every = 100
  if 'demo' in variants:
    config.model.arch = 'dcgan'
    config.model.dim = 16
    config.gan.epochs = 40
    config.gan.select_every = 10
    config.gan.epochs_per_call = 10
    config.gan.checkpoint_every = 20
    config.train.epochs = 20
  if 'tiny' in variants:
    config.model.arch = 'dcgan'
    config.model.dim = 4
    config.model.latent_dim = 8
    config.gan.epochs = 4
    config.gan.select_every = 2
    config.gan.epochs_per_call = 2
    config.gan.checkpoint_every = 2
    config.gan.samples = 4
    config.gan.task.n_critic = 2
    config.gan.task.n_select = 8
    config.gan.task.swd_levels = 2
    config.gan.task.swd_patch = 5
    config.train.epochs = 4
  return config
