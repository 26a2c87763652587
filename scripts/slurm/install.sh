#!/usr/bin/env bash
# Installs what scripts/slurm/test_cluster.sh needs: Debian's Slurm (22.05: slurmctld, slurmd, sbatch, ...) and
# munge. Run as root (CI: `.ci/run` calls it before the test command). Safe to run again.
#   sudo scripts/slurm/install.sh
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    echo "slurm-wlm and munge already installed: $(slurmctld -V)"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/slurm/install.sh: needs root for apt-get (run it with sudo)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q slurm-wlm munge
echo "installed: $(slurmctld -V)"
