"""Process-level plumbing: distributed context, rank-0 logging, run directory and manifests, W&B."""
