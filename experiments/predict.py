r"""Scores new images (PNG, JPEG, DICOM; a folder, recursively) with a trained run.

  python -m experiments.predict --run=runs/cae_quick --images=scans/ --out=predictions/
  python -m experiments.predict --run=runs/cae_quick --images=scans/ --out=p/ --combine=vote \
      --dicom_window=80,40 --iterations=0,4

Writes OUT/predictions.csv (file, score, decision, per-iteration scores, how a DICOM file's
intensities were set, warnings such as a blank image; unreadable files, a directory or an image
over PIL's pixel limit among them, with their error) and OUT/overlays/*.png (the anomaly map
over each image). A run folder whose config.json fails the config check, or that cannot give
what is asked, exits with status 2 and one message, as report, compare and rescore do.
"""

from absl import app, flags, logging

from uadjax import predict, runtime
from uadjax.run import storage

_RUN = flags.DEFINE_string('run', None, 'The run folder (see experiments.cross_validate).')
_IMAGES = flags.DEFINE_string('images', None, 'Folder of images to score (searched recursively).')
_OUT = flags.DEFINE_string('out', None, 'Output folder.')
_COMBINE = flags.DEFINE_enum(
  'combine',
  'mean',
  list(predict.COMBINE),
  "'mean': mean score vs mean threshold; 'vote': each iteration's own threshold, majority.",
)
_ITERATIONS = flags.DEFINE_list('iterations', [], 'Iterations to use (default: all finished).')
_WINDOW = flags.DEFINE_list(
  'dicom_window',
  [],
  "CT window as WIDTH,LEVEL in HU (default: the run's, else 80,40); other modalities use their "
  'own window, else a percentile range.',
)
_OVERLAYS = flags.DEFINE_bool('overlays', True, 'Write an anomaly-map overlay PNG per image.')
flags.mark_flags_as_required(['run', 'images', 'out'])


def main(argv):
  del argv
  runtime.setup()
  with (
    runtime.user_errors(),
    storage.reported(_OUT.value, 'writing the predictions', storage.REWRITES),
  ):
    result = predict.predict(
      _RUN.value,
      _IMAGES.value,
      _OUT.value,
      combine=_COMBINE.value,
      iterations=[int(i) for i in _ITERATIONS.value] or None,
      dicom_window=tuple(float(v) for v in _WINDOW.value) or None,
      overlays=_OVERLAYS.value,
    )
  logging.info('Predictions in %s', result['csv'])
  print(
    f'{result["n_images"]} images scored, {result["n_abnormal"]} abnormal, '
    f'{result["n_errors"]} files unreadable: {result["csv"]}'
  )


if __name__ == '__main__':
  app.run(main)
