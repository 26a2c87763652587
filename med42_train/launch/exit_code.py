"""`python -m med42_train.launch.exit_code STAGE_DIR SINCE_S RC`: prints the exit code a batch script acts on.

75 when the launch failed because its workers stopped on a preemption signal after a complete checkpoint (the
stage's PREEMPTED marker is newer than SINCE_S), else RC. Used by scripts/slurm/_finish.sbatch.j2; the same
rule as `med42 pipeline` (runtime/preemption.py launcher_exit_code).
"""

import sys
from pathlib import Path

from med42_train.runtime.preemption import launcher_exit_code

if __name__ == "__main__":
    stage_dir, since_s, returncode = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    print(launcher_exit_code(returncode, Path(stage_dir), since_s))
