"""The sandbox supervisor: isolates, limits and outlives the learner's worker process.

Run as ``python -m grader.engine.supervisor CONFIG_JSON``. It makes itself a *child subreaper*,
so every process the learner starts (detached ones too) stays its descendant, then forks the
worker. When the worker ends, or the grader sends SIGTERM, it kills every descendant and exits.

Isolation of the worker, strongest first (what applies is reported back in ``hello``):

- as root on Linux: new PID, mount and network namespaces; every mount read-only but one
  size-capped scratch tmpfs; the ``hidden`` paths covered by empty tmpfs; then a unique
  unprivileged uid/gid. The worker is PID 1 of its namespace: when it ends, the kernel ends
  everything it started;
- as another user where user namespaces are allowed: the same mounts and no network, without the
  PID namespace (descendants are killed by the subreaper instead);
- elsewhere (macOS, locked-down containers): resource limits and process-group cleanup only.

Resource limits always: address space, CPU seconds, file size, core dumps off, and (with a
unique uid) the number of processes.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option: int, value: int) -> bool:
    try:
        return libc().prctl(option, value, 0, 0, 0) == 0
    except Exception:
        return False


def unshare(flags: int) -> None:
    _check(libc().unshare(flags), "unshare")


def mount(source, target: str, fstype, flags: int, data=None) -> None:
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    _check(libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


MS_NOEXEC, MS_MOVE = 8, 8192
_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}


def _mount_points() -> list[tuple[str, int]]:
    """(mount point, flags to keep) for every mount visible in this namespace, parents first."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            flags = 0
            for opt in fields[5].split(","):
                flags |= _MOUNT_FLAGS.get(opt, 0)
            points.append((point, flags))
    return points


def _closed_ancestor(path: str) -> str | None:
    """The highest ancestor of ``path`` that others cannot traverse (like /root, mode 0700)."""
    parts = os.path.abspath(path).split(os.sep)[1:]
    for i in range(1, len(parts)):
        ancestor = os.sep + os.sep.join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def isolate_mounts(config: dict) -> str:
    """Private mounts; return the only writable directory (a size-capped tmpfs).

    Everything else is remounted read-only; ``hidden`` paths are covered by empty tmpfs; paths the
    worker needs under a closed directory (Python under /root/.pyenv, say) are moved onto a
    fresh 0755 tmpfs at that directory, so an unprivileged uid can reach them and nothing else.
    """
    scratch = config["scratch"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, f"size={config['tmp_mb']}m,mode=0755")
    needed = [p for p in config.get("expose", []) if os.path.exists(p)]
    staged = []
    for n, path in enumerate(needed):
        top = _closed_ancestor(path)
        if top is None:
            continue
        stage = os.path.join(scratch, ".stage", str(n))
        os.makedirs(stage)
        mount(path, stage, None, MS_BIND | MS_REC)
        staged.append((top, stage, path))
    for top in sorted({top for top, _, _ in staged}):
        mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for _, stage, path in staged:
        os.makedirs(path, mode=0o755, exist_ok=True)
        mount(stage, path, None, MS_MOVE)
    for path in config.get("hidden", []):
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0555")
        elif os.path.isfile(path):
            mount("/dev/null", path, None, MS_BIND)
    for point, keep in _mount_points():
        if point == scratch or point.startswith("/proc") or point.startswith("/sys"):
            continue
        try:
            mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)
        except OSError:
            pass  # a mount whose flags are locked stays as it was
    work = os.path.join(scratch, "work")
    os.makedirs(work)
    return work


def apply_limits(config: dict, own_uid: bool) -> None:
    mem = config["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_s"], config["cpu_s"] + 5))
    fsize = config["fsize_mb"] << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if own_uid:
        resource.setrlimit(resource.RLIMIT_NPROC, (config["nproc"], config["nproc"]))


def become_worker(config: dict, req_fd: int, resp_fd: int, mode: str) -> None:
    """In the forked child: isolate, limit, drop privileges, exec the worker. Never returns."""
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.set_inheritable(req_fd, True)
    os.set_inheritable(resp_fd, True)
    uid = config.get("uid")
    scratch = config["scratch"]
    if mode == "root":
        unshare(CLONE_NEWNS | CLONE_NEWNET)
        scratch = isolate_mounts(config)
        try:  # a /proc for the new PID namespace: the learner sees only its own processes
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
        except OSError:
            pass
    elif mode == "userns":
        outer_uid, outer_gid = os.getuid(), os.getgid()
        unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {outer_uid} 1")
        _write("/proc/self/gid_map", f"0 {outer_gid} 1")
        scratch = isolate_mounts(config)
    if mode == "root":
        os.chown(scratch, uid, uid)
    os.chmod(scratch, 0o700)
    apply_limits(config, own_uid=(mode == "root"))
    if mode == "root":
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": scratch, "TMPDIR": scratch,
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": os.path.join(scratch, "mpl"),
        "IPYTHONDIR": os.path.join(scratch, "ipython"), "PYTHONPATH": os.pathsep.join(config["pythonpath"]),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1", "COURSE_FAST": "1", "COURSE_SANDBOX": "1", "LC_ALL": "C.UTF-8",
    }
    os.chdir(scratch)
    os.execve(sys.executable, [sys.executable, "-m", "grader.engine.worker", str(req_fd), str(resp_fd)], env)


def descendants(root: int) -> list[int]:
    """All live descendants of ``root``, from /proc (Linux) or ``ps`` elsewhere."""
    parents: dict[int, int] = {}
    if os.path.isdir("/proc/self"):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read().decode(errors="replace")
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid]
        found.extend(children)
        frontier.extend(children)
    return found


def kill_all_descendants() -> None:
    me = os.getpid()
    for _ in range(50):
        pids = descendants(me)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap(timeout=0.1)
    _reap(timeout=0)


def _reap(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)


def choose_mode(config: dict) -> str:
    if not config.get("isolate", True) or not sys.platform.startswith("linux"):
        return "none"
    if os.geteuid() == 0:
        return "root"
    return "userns" if config.get("allow_userns", True) else "none"


def main() -> None:
    config = json.loads(sys.argv[1])
    req_fd, resp_fd = config["req_fd"], config["resp_fd"]
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    mode = choose_mode(config)
    if mode == "root":
        try:
            unshare(CLONE_NEWPID)  # the next child is PID 1 of a new namespace
        except OSError:
            mode = "userns"
    status_r, status_w = os.pipe()  # the child reports a failed isolation step here
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        try:
            try:
                become_worker(config, req_fd, resp_fd, mode)
            except OSError as exc:
                if mode == "none":
                    raise
                os.write(status_w, f"isolation unavailable ({exc}); limits only\n".encode())
                become_worker(config, req_fd, resp_fd, "none")
        except BaseException as exc:  # noqa: BLE001 - report and die
            os.write(2, f"sandbox: could not start the worker: {exc}\n".encode())
        os._exit(70)
    os.close(status_w)
    os.close(req_fd)
    os.close(resp_fd)
    note = os.read(status_r, 4096).decode(errors="replace")  # EOF once the child execs
    os.close(status_r)
    if note:
        sys.stderr.write(f"sandbox: {note}")

    def on_term(signum, frame):
        kill_all_descendants()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    status = 0
    while True:
        try:
            done, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    kill_all_descendants()
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF if status else 0)


if __name__ == "__main__":
    main()
