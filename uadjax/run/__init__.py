"""The run folder: who may write it (lock), how a run stops cleanly (stop), and which data it
was trained on (fingerprint)."""
