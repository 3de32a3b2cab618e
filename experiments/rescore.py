r"""Scores a finished run's checkpoints under score variants, to choose one on validation AUC.

  python -m experiments.rescore --run=runs/cae_cpu
  python -m experiments.rescore --run=runs/cae_cpu \
      --variant='brain_top5:mask=brain,reduction=topk,topk=0.05' --variant='study:'

Prints, per variant, the mean ± std over iterations of the validation AUC (what to choose by)
and of the test AUC (reported beside it, never to choose by). See uadjax/rescore.py.
"""

from absl import app, flags

from uadjax import rescore, runtime

DEFAULT_VARIANTS = (
  'study:',
  'head:mask=head',
  'brain:mask=brain',
  'top5:reduction=topk,topk=0.05',
  'brain_top5:mask=brain,reduction=topk,topk=0.05',
  'brain_top10:mask=brain,reduction=topk,topk=0.1',
  'brain_blur1:mask=brain,blur=1.0',
  'brain_blur1_top5:mask=brain,blur=1.0,reduction=topk,topk=0.05',
  'ssim:residual=ssim',
  'brain_ssim:mask=brain,residual=ssim',
)

_RUN = flags.DEFINE_string('run', None, 'A finished run folder (CAE, SSAE or f-AnoGAN).')
_VARIANTS = flags.DEFINE_multi_string(
  'variant', list(DEFAULT_VARIANTS), "'name:key=value,...' of task score switches; repeatable."
)
flags.mark_flag_as_required('run')


def _parse(text: str) -> tuple[str, dict]:
  name, _, body = text.partition(':')
  overrides = {}
  for item in filter(None, body.split(',')):
    key, _, value = item.partition('=')
    try:
      overrides[key] = float(value) if key in ('topk', 'blur', 'kappa') else value
    except ValueError as e:
      raise app.UsageError(f'--variant={text!r}: {key}={value!r} is not a number.') from e
  return name, overrides


def main(argv):
  del argv
  runtime.setup()
  variants = dict(_parse(v) for v in _VARIANTS.value)
  with runtime.user_errors():
    print(rescore.markdown(rescore.rescore(_RUN.value, variants)))


if __name__ == '__main__':
  app.run(main)
