#!/usr/bin/env bash
# Prepares this machine for the `slurm` tests (tests/test_slurm.py): Debian's SLURM and munge
# (as root, when missing) and the `cluster` extra (snakemake-executor-plugin-slurm) in .venv.
# Idempotent and never fatal: whatever cannot be installed makes those tests skip, with the
# reason. The tests start their own single-node cluster (tests/slurm/cluster.py); nothing here
# starts a daemon.
#
#   bash scripts/slurm_local.sh          # after scripts/setup.sh
set -uo pipefail
cd "$(dirname "$0")/.."

if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null
then
  :
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # slurm-wlm: slurmctld, slurmd and the clients (sbatch, squeue, sacct, srun); munge: auth.
  # Package scripts cannot start services here (no systemd); the tests start the daemons.
  if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends slurm-wlm munge) >/dev/null 2>&1; then
    echo "slurm_local: could not install slurm-wlm and munge; the slurm tests will skip" >&2
  fi
else
  echo "slurm_local: SLURM is not installed and this is not root with apt-get;" \
       "the slurm tests will skip" >&2
fi

if [ -x .venv/bin/python ]; then
  stamp=".venv/.cluster-installed-$(sha1sum pyproject.toml | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    if .venv/bin/python -m pip install -q -e '.[cluster]'; then
      touch "$stamp"
    else
      echo "slurm_local: could not install the cluster extra; the slurm tests will skip" >&2
    fi
  fi
else
  echo "slurm_local: no .venv (run scripts/setup.sh first); the slurm tests will skip" >&2
fi
exit 0
