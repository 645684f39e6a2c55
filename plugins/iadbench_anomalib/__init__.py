"""iadbench_anomalib plugin for iadbench."""
