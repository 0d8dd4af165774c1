"""A study as plain records: readers, the trials table and counts (no Optuna, pandas or TensorFlow)."""
