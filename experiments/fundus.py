r"""The fundus image-quality experiments (the study's part 2): one entry point, two configs.

  python -m experiments.fundus --config=configs/fundus/densenet.py:quick --workdir=runs/densenet
  python -m experiments.fundus --config=configs/fundus/fanogan.py:quick --workdir=runs/fundus_gan

Supervised DenseNet121 (`densenet.py`): trained on good and poor with the weighted
cross-entropy, the checkpoint with the lowest validation loss tested, then the report draws the
class-activation maps of the test images (Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, EigenCAM,
Score-CAM, FullGrad). Unsupervised f-AnoGAN at 256x256 (`fanogan.py`): GAN, then encoder, on
good images only. Either way the workdir has the layout of a head-CT run (iter_00/ holds the
single split), so experiments.report, compare and predict work on it; summary.md also scores
the test-only class (DRIMDB's Outlier/) against the test good images.

Flags as experiments.cross_validate (--config.x.y=... overrides, --noreport, --distributed);
rerunning the same command resumes.
"""

from absl import app

from experiments import cross_validate

if __name__ == '__main__':
  app.run(cross_validate.main)
