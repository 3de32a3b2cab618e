"""Tables and figures of cross-validation runs; the only package that imports matplotlib.

Attributes:
  figures: training curves, threshold selection and score histograms as PNG files
    (`write_run_figures` writes them all).
  tables: Markdown tables of a run's summary next to the study's published rows
    (`summary_markdown`, `study_row`).
  images: figures of images: test examples by outcome, anomaly maps, overlays, sample grids.
  report: `write_report(workdir)`, a run's figures and report.md in `workdir/report`.
  compare: `compare_runs(workdirs, outdir)`, several runs' table and ROC curves.
"""

from uadjax.reports.compare import compare_runs
from uadjax.reports.figures import (
  plot_score_histograms,
  plot_score_parts,
  plot_threshold_selection,
  plot_threshold_selection_grid,
  plot_training_curves,
  write_run_figures,
)
from uadjax.reports.report import write_report
from uadjax.reports.tables import study_row, summary_markdown

__all__ = [
  'compare_runs',
  'plot_score_histograms',
  'plot_score_parts',
  'plot_threshold_selection',
  'plot_threshold_selection_grid',
  'plot_training_curves',
  'study_row',
  'summary_markdown',
  'write_report',
  'write_run_figures',
]
