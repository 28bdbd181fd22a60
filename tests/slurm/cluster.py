"""A throw-away single-node SLURM cluster on localhost, for the ``slurm`` tests.

``LocalSlurm(folder).start()`` writes a munge key, a ``slurm.conf`` and the daemons' state
folders under ``folder``, then starts ``munged``, ``slurmctld`` and ``slurmd`` in the
foreground (as child processes of this Python process) and waits until the node accepts jobs.
``stop()`` cancels the jobs still queued or running, then ends exactly those three processes by
their pids. Clients (``sbatch``, ``squeue``, ``sacct``, Snakemake's SLURM executor) find the
cluster through ``SLURM_CONF``: use ``env()``.

The cluster has no cgroups, no systemd and no accounting database: ``proctrack/linuxproc``,
``task/none``, ``select/cons_tres`` with cores and memory as consumables, one node with the
machine's CPUs and memory (and, with ``gpus=N``, N GPUs that exist only for the scheduler:
``--gpus=1`` jobs are scheduled, nothing is visible to CUDA), one partition ``debug``. Without
slurmdbd, ``sacct`` has no job history, so finished jobs stay visible to
``squeue --states=all`` (``MinJobAge``) and are written to a job-completion file
(``jobcomp/filetxt``, read by ``sacct --completion``).

The configuration is also copied to ``/etc/slurm/slurm.conf`` while the cluster runs (and
removed by ``stop()``), because that is where ``srun`` inside a job looks: Snakemake's jobstep
executor drops every ``SLURM_*`` variable, ``SLURM_CONF`` included, before it calls ``srun``.
An ``/etc/slurm/slurm.conf`` that this module did not write is never touched: the cluster
refuses to start then.

Run ``python -m tests.slurm.cluster FOLDER [--gpus N]`` to start one by hand (Ctrl-C or
``kill PID`` stops it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PARTITION = "debug"
MIN_JOB_AGE = 3600  # seconds a finished job stays in slurmctld (squeue --states=all)
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# single-node test cluster written by tests/slurm/cluster.py"


class SlurmUnavailable(RuntimeError):
    """The SLURM or munge programs are missing, or the daemons did not come up."""


def missing_programs() -> list[str]:
    """Programs the local cluster needs that are not on PATH (or in /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    needed = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo",
              "scontrol", "srun", "sacct")
    return [name for name in needed if shutil.which(name, path=path) is None]


def system_conf_foreign() -> str:
    """Why the system-wide slurm.conf cannot be used ('' when it is absent or ours)."""
    try:
        text = SYSTEM_CONF.read_text()
    except FileNotFoundError:
        return "" if os.access(SYSTEM_CONF.parent if SYSTEM_CONF.parent.exists() else "/etc",
                               os.W_OK) else f"cannot write {SYSTEM_CONF} (not root?)"
    except OSError as err:
        return f"cannot read {SYSTEM_CONF}: {err}"
    if text.startswith(MARKER):  # ours: replace it unless its cluster is still running
        owner = Path(text.splitlines()[0][len(MARKER) + len(" in "):])
        try:
            os.kill(int((owner / "slurmctld.pid").read_text().split()[0]), 0)
        except (OSError, ValueError, IndexError):
            return ""  # left behind by a killed run
        return f"another test cluster is running ({owner})"
    return f"{SYSTEM_CONF} exists (a real SLURM installation?); not replacing it"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_hardware() -> dict[str, str]:
    """The node line of ``slurmd -C`` (CPUs, sockets, cores, threads, RealMemory)."""
    out = subprocess.run([sbin("slurmd"), "-C"], capture_output=True, text=True,
                         check=True).stdout
    line = out.splitlines()[0]
    fields = dict(item.split("=", 1) for item in line.split())
    fields.pop("NodeName", None)
    return fields


def sbin(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    found = shutil.which(name, path=path)
    if found is None:
        raise SlurmUnavailable(f"'{name}' is not installed (see scripts/slurm_local.sh)")
    return found


class LocalSlurm:
    """One controller, one compute node and one munge daemon, all under ``folder``."""

    def __init__(self, folder: Path, cpus: int | None = None, gpus: int = 0):
        self.folder = Path(folder).resolve()
        self.cpus = cpus
        self.gpus = gpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.folder / "slurm.conf"
        self.jobcomp = self.folder / "jobcomp.txt"
        self.procs: dict[str, subprocess.Popen] = {}
        self.ctld_port = free_port()

    # -- configuration ----------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("state", "spool", "munge", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "munge").chmod(0o755)
        key = self.folder / "munge" / "munge.key"
        if not key.exists():
            subprocess.run([sbin("mungekey"), "--create", "--keyfile", str(key)], check=True,
                           capture_output=True)
        key.chmod(0o600)
        hw = node_hardware()
        if self.cpus is not None:  # fewer CPUs than the machine has: keep the topology valid
            hw = {"CPUs": str(self.cpus), "RealMemory": hw["RealMemory"]}
        # leave the operating system some memory, or slurmd reports "Low RealMemory"
        hw["RealMemory"] = str(int(int(hw["RealMemory"]) * 0.9))
        if self.gpus:  # GPUs the scheduler counts; nothing on the node backs them
            hw["Gres"] = f"gpu:{self.gpus}"
            fake = self.folder / "fakegpu"  # gres/gpu wants files; plain files will do
            fake.mkdir(exist_ok=True)
            lines = []
            for i in range(self.gpus):
                (fake / f"nvidia{i}").touch()
                lines.append(f"Name=gpu File={fake / f'nvidia{i}'}\n")
            (self.folder / "gres.conf").write_text("".join(lines))
        node = " ".join(f"{k}={v}" for k, v in hw.items())
        f = self.folder
        self.conf.write_text(f"""\
{MARKER} in {f}
ClusterName=lagnhtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={f}/munge/munge.socket
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/slurmd.pid
SlurmctldLogFile={f}/log/slurmctld.log
SlurmdLogFile={f}/log/slurmd.log
MailProg=/bin/true
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
MpiDefault=none
GresTypes=gpu
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge={MIN_JOB_AGE}
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
Waittime=0
NodeName={self.node} NodeAddr=127.0.0.1 {node} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")

    def env(self) -> dict[str, str]:
        """This process's environment plus ``SLURM_CONF`` pointing at this cluster."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        for var in [v for v in env if v.startswith(("SLURM_JOB", "SBATCH_", "SRUN_"))]:
            env.pop(var)
        return env

    # -- daemons ----------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.folder / "log" / f"{name}.out", "ab") as log:
            self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, env=self.env(),
                                                cwd=self.folder)

    def start(self, timeout: float = 60) -> LocalSlurm:
        """Start munged, slurmctld and slurmd; raise SlurmUnavailable if the node does not
        become idle within ``timeout`` seconds (the daemons are stopped then)."""
        missing = missing_programs()
        if missing:
            raise SlurmUnavailable("not installed: " + ", ".join(missing))
        foreign = system_conf_foreign()
        if foreign:
            raise SlurmUnavailable(foreign)
        self.write_config()
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.conf, SYSTEM_CONF)
        m = self.folder / "munge"
        try:
            self._spawn("munged", [sbin("munged"), "--foreground", "--force",
                                   f"--key-file={m / 'munge.key'}",
                                   f"--socket={m / 'munge.socket'}",
                                   f"--pid-file={m / 'munged.pid'}",
                                   f"--log-file={m / 'munged.log'}",
                                   f"--seed-file={m / 'munged.seed'}"])
            self._wait(lambda: (m / "munge.socket").exists(), 15, "munged")
            self._spawn("slurmctld", [sbin("slurmctld"), "-D", "-c", "-i",
                                      "-f", str(self.conf)])
            self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), timeout, "slurmctld")
            self._spawn("slurmd", [sbin("slurmd"), "-D", "-N", self.node,
                                   "-f", str(self.conf)])
            self._wait(self._node_idle, timeout, "slurmd")
        except BaseException:
            self.stop()
            raise
        return self

    def _ok(self, cmd: list[str], needle: str) -> bool:
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, env=self.env(),
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return run.returncode == 0 and needle in run.stdout

    def _node_idle(self) -> bool:
        return self._ok(["sinfo", "--noheader", "--Node", "--format=%N %t"],
                        f"{self.node} idle")

    def _wait(self, ready, timeout: float, name: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise SlurmUnavailable(f"{', '.join(dead)} exited early:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"{name} not ready after {timeout:.0f} s:\n{self.logs()}")

    def logs(self, tail: int = 2000) -> str:
        parts = []
        for path in sorted((self.folder / "log").glob("*")) + [self.folder / "munge" /
                                                                "munged.log"]:
            if path.is_file():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def cancel_jobs(self, timeout: float = 30) -> None:
        """Cancel every job of this cluster and wait until none is left running."""
        env = self.env()
        subprocess.run(["scancel", "--partition", PARTITION], capture_output=True, env=env,
                       timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = subprocess.run(["squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING",
                                  "--format=%i"], capture_output=True, text=True, env=env,
                                 timeout=30)
            if run.returncode != 0 or not run.stdout.strip():
                return
            time.sleep(1)

    def stop(self) -> None:
        """Cancel leftover jobs, then terminate the daemons this object started (newest
        first), by pid, and remove the system-wide copy of the configuration."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            try:
                self.cancel_jobs()
            except (OSError, subprocess.SubprocessError):
                pass
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        if SYSTEM_CONF.exists() and SYSTEM_CONF.read_text().startswith(f"{MARKER} in "
                                                                       f"{self.folder}\n"):
            SYSTEM_CONF.unlink()

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    import argparse
    import signal
    import sys

    # stop the daemons (and remove /etc/slurm/slurm.conf) on Ctrl-C and on `kill PID` alike
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the cluster keeps its files")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs the node pretends to have")
    args = parser.parse_args()
    with LocalSlurm(args.folder, gpus=args.gpus) as cluster:
        print(f"export SLURM_CONF={cluster.conf}   # then: sinfo, sbatch, snakemake "
              "--workflow-profile profiles/slurm ...; Ctrl-C stops the cluster", flush=True)
        try:
            while all(p.poll() is None for p in cluster.procs.values()):
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
