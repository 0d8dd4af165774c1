"""Engine-neutral study records: trials, the study's identity, which trial it picks, its summary."""
