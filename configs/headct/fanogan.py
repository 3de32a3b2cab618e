r"""f-AnoGAN on head CT, 2x5 cross-validation: a WGAN-GP, then its encoder (izi_f), one command.

  python -m experiments.cross_validate --config=configs/headct/fanogan.py --workdir=runs/fanogan
  on a CPU:   --config=configs/headct/fanogan.py:quick   (the lighter 'dcgan' networks)
  the CPU recipe (GAN 1200 epochs, n_critic 2, lr 2e-4; encoder 600 epochs, lr 1e-3 warmed up
  and cosine-decayed; brain-masked score): --config=configs/headct/fanogan.py:cpu
  for tests:  --config=configs/headct/fanogan.py:tiny
  one iteration, another encoder variant:
              --config.cv.iterations=0 --config.task.variant=ziz   (izi | izi_f | ziz)

The top level is the encoder phase (study: best validation AUC over 3000 epochs, F1 threshold);
`gan` is phase 1 (WGAN-GP, selected every `select_every` epochs by the sliced Wasserstein
distance to the training images: the study's Inception FID needs a download). A rerun resumes
whichever phase was interrupted (uadjax/protocol/driver.py; the GAN phase:
uadjax/families/fanogan/phase.py).

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
    image_size=config.data.get_ref('image_size'),  # follows --config.data.image_size
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
    # About 4 min an iteration on a 2-core CPU (measured: GAN 3m48s, encoder 30 s): 2000 critic
    # and 400 generator steps, then 400 encoder steps.
    shorten(config, dim=32, gan_epochs=1000, select_every=100, checkpoint_every=200, epochs=200)
    config.cv.epochs_per_call = 50
    config.cv.checkpoint_every = 100
  if 'cpu' in variants:
    # 66m49s for the 10 iterations on a 2-core CPU beside other jobs: the :quick networks,
    # 1200 GAN epochs with the generator updated every second critic step at twice the study's
    # rate (the fundus :quick finding: with n_critic 5 and 1e-4 a CPU budget gives the
    # generator too few updates; here 1200 generator steps instead of :quick's 400), and the
    # encoder trained as the CAE's CPU recipe trains (common: lr 1e-3, 20 warm-up epochs,
    # cosine decay) for 600 epochs instead of 200 at the study's 1e-4.
    shorten(config, dim=32, gan_epochs=1200, select_every=100, checkpoint_every=400, epochs=600)
    config.gan.task.n_critic = 2
    config.gan.optimizer.learning_rate = 2e-4
    config.optimizer.update(dict(learning_rate=1e-3, schedule='cosine', warmup_epochs=20))
    config.cv.epochs_per_call = 50
    config.cv.checkpoint_every = 100
    # The score the CAE's and the SSAE's validation sets chose (brain + blur 1 px + top 5 %),
    # applied to the image term; the feature term is the study's. See docs/results.md.
    config.task.update(dict(mask='brain', blur=1.0, reduction='topk', topk=0.05))
  if 'demo' in variants:
    shorten(config, dim=16, gan_epochs=40, select_every=10, checkpoint_every=20, epochs=20)
  if 'tiny' in variants:
    shorten(config, dim=4, gan_epochs=4, select_every=2, checkpoint_every=2, epochs=4)
    make_tiny(config)
  return config


def shorten(config, *, dim, gan_epochs, select_every, checkpoint_every, epochs) -> None:
  """A lighter variant: the 'dcgan' pair of width `dim`, `gan_epochs` GAN epochs selected (and
  sampled) every `select_every`, and `epochs` encoder epochs. Shared with configs/fundus."""
  config.model.arch = 'dcgan'
  config.model.dim = dim
  config.gan.epochs = gan_epochs
  config.gan.select_every = select_every
  config.gan.epochs_per_call = select_every
  config.gan.checkpoint_every = checkpoint_every
  config.train.epochs = epochs


def make_tiny(config) -> None:
  """What a test-sized run adds to `shorten`: a small latent, cheap critic steps and selection."""
  config.model.latent_dim = 8
  config.gan.samples = 4
  config.gan.task.n_critic = 2
  config.gan.task.n_select = 8
  config.gan.task.swd_levels = 2
  config.gan.task.swd_patch = 5
