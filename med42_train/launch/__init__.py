"""Launchers: the local pipeline (torchrun for training stages); Slurm sbatch chains come in scripts/slurm."""
