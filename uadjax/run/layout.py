"""The workdir of a run: every path in it, named once. Everything that reads or writes a run
folder (the protocol, `uadjax.inference`, the reports, predict, compare) asks a `RunDir`.

Workdir layout:
  .lock                              held by the run in progress (its pid, host, start time)
  config.json                        the run's config (a resume must use the same) and the data's
                                     fingerprint (`uadjax.run.fingerprint`; the same data)
  iter_XX/checkpoints/best           the selected variables (Orbax; `uadjax.run.checkpoint`), with
                                     their epoch, metric and the image shape trained on
  iter_XX/checkpoints/latest/N       the training carry at epoch N, for resuming
  iter_XX/history.json               losses and the validation curve so far
  iter_XX/metrics.json               the iteration's result (`uadjax.run.records`); its presence
                                     marks the iteration done
  progress.csv                       one row per iteration and compiled call: epoch, loss, val
                                     AUC, images/s, time left (the progress log, for plotting)
  summary.json, summary.md           mean ± std over the iterations
  tensorboard/iter_XX/               TensorBoard event files, one TensorBoard run per iteration:
                                     loss, validation AUC, learning rate, images
                                     (`uadjax.protocol.summaries`; off with cv.tensorboard=False)
  figures/*.png                      training curves, threshold selection, score histograms
  report/                            report.md and its figures (`uadjax.reports.write_report`)

A family with phases before its scored one (f-AnoGAN: `uadjax.families`) keeps each phase in a
folder of its name, with the same iteration layout, its own progress.csv, and a record instead
of metrics.json:
  gan/iter_XX/checkpoints/latest/N   the GAN's training carry (resuming)
  gan/iter_XX/checkpoints/best       the selected generator and critic
  gan/iter_XX/history.json           critic loss, the critic's val AUC, the selection distance
  gan/iter_XX/samples/epoch_NNNNN.png  sample grids at each 'latest' checkpoint (fixed codes)
  gan/iter_XX/samples/selected.png   the selected generator's samples
  gan/iter_XX/gan.json               the selection; written last, it marks the phase done
  gan/progress.csv                   the phase's progress log
  tensorboard/gan/iter_XX/           the phase's TensorBoard runs
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class RunDir:
  """The paths of one run folder, or of one phase's folder inside it.

  Attributes:
    root: the workdir.
    phase: '' for the scored phase (the top level), else the phase's folder name ('gan').
  """

  root: str
  phase: str = ''

  # -- the run ------------------------------------------------------------------------------

  @property
  def lock(self) -> str:
    return os.path.join(self.root, '.lock')

  @property
  def config(self) -> str:
    return os.path.join(self.root, 'config.json')

  @property
  def summary_json(self) -> str:
    return os.path.join(self.root, 'summary.json')

  @property
  def summary_md(self) -> str:
    return os.path.join(self.root, 'summary.md')

  @property
  def figures(self) -> str:
    return os.path.join(self.root, 'figures')

  @property
  def report(self) -> str:
    return os.path.join(self.root, 'report')

  def of_phase(self, name: str) -> RunDir:
    """The folder of a phase before the scored one ('gan'); '' is the scored phase's."""
    return RunDir(self.root, name)

  # -- one phase ------------------------------------------------------------------------------

  @property
  def base(self) -> str:
    """The phase's folder (the workdir itself for the scored phase)."""
    return os.path.join(self.root, self.phase) if self.phase else self.root

  @property
  def progress(self) -> str:
    return os.path.join(self.base, 'progress.csv')

  def iteration(self, i: int) -> str:
    return os.path.join(self.base, f'iter_{i:02d}')

  def best(self, i: int) -> str:
    return os.path.join(self.iteration(i), 'checkpoints', 'best')

  def latest(self, i: int) -> str:
    return os.path.join(self.iteration(i), 'checkpoints', 'latest')

  def history(self, i: int) -> str:
    return os.path.join(self.iteration(i), 'history.json')

  def metrics(self, i: int) -> str:
    """The scored phase's result of iteration i (its presence marks the iteration done)."""
    return os.path.join(self.iteration(i), 'metrics.json')

  def record(self, i: int, name: str) -> str:
    """A phase's record of iteration i ('gan.json'), written last: it marks the phase done."""
    return os.path.join(self.iteration(i), name)

  def tensorboard(self, i: int) -> str:
    """The TensorBoard run of iteration i: WORKDIR/tensorboard/iter_XX (a phase's under
    tensorboard/PHASE/), so `tensorboard --logdir WORKDIR` lists every iteration and phase."""
    return os.path.join(self.root, 'tensorboard', self.phase, f'iter_{i:02d}')

  def samples(self, i: int) -> str:
    """Generated sample grids of iteration i (a generative phase's)."""
    return os.path.join(self.iteration(i), 'samples')

  def iterations_with(self, name: str = 'metrics.json') -> list[int]:
    """The iterations whose folder holds `name` (default: the finished ones), in order."""
    if not os.path.isdir(self.base):
      return []
    out = []
    for entry in sorted(os.listdir(self.base)):
      if entry.startswith('iter_') and entry[5:].isdigit():
        if os.path.isfile(os.path.join(self.base, entry, name)):
          out.append(int(entry[5:]))
    return out

  def sample_folders(self, i: int, phases=()) -> list[str]:
    """Where a report looks for an iteration's generated samples: the given phases' folders
    first (f-AnoGAN's gan/iter_XX/samples), then the scored phase's, then the run's."""
    folders = [self.of_phase(p).samples(i) for p in phases]
    return [*folders, self.samples(i), os.path.join(self.root, 'samples')]
