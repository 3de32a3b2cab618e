"""The SSAE end to end on the phantoms (the pyramid and the networks are in tests/models, the
multi-scale score in tests/train)."""

from tests.helpers import REPO
from uadjax import io
from uadjax.reports import tables


def test_tiny_protocol_end_to_end_on_phantoms(ssae_run):
  summary = io.read_json(ssae_run / 'summary.json')
  assert summary['model'] == 'ssae' and summary['n_iterations'] == 2
  assert 0 <= summary['metrics']['auc']['mean'] <= 1
  text = (ssae_run / 'summary.md').read_text()
  assert '| SSAE (uadjax) |' in text
  assert '| SSAE (study) |' not in text  # real-data rows are not set beside phantom results
  assert (
    tables.summary_markdown(summary, study_model='ssae').count('| SSAE (study) | 0.81 ± 0.08') == 1
  )
  assert (REPO / 'configs' / 'headct' / 'ssae.py').exists()
