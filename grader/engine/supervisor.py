"""The sandbox supervisor: isolates, limits and outlives the learner's worker process.

Run as ``python -m grader.engine.supervisor CONFIG_JSON``. It joins the sandbox's cgroup (if the
grader made one), makes itself a *child subreaper*, so every process the learner starts (detached
ones too) stays its descendant, then forks the worker. When the worker ends, or the grader sends
SIGTERM, it kills every descendant and exits.

Isolation of the worker (what applied is handed to the worker, which reports it in ``hello``):

- on Linux, as root or as an ordinary user where user namespaces are allowed: new PID, IPC,
  mount and network namespaces; a root filesystem built from an allow list (``binds``: the
  interpreter, the installed packages, the library as the graded notebook may see it, the public
  grader; nothing else of the machine), every mount of it read-only but a size-capped scratch
  tmpfs and /dev/shm, the ``hidden`` paths inside it covered; the old root detached. Then the
  learner's code loses every privilege for good: as root, a unique unprivileged uid/gid; as an
  ordinary user, a nested user namespace that maps no one to root (so the mounts are locked
  and cannot be undone) with every capability cleared. No new privileges, no capability
  bounding set, either way. The worker is PID 1 of its namespace: when it ends, the kernel ends
  everything it started;
- as root where namespaces are not available (or not wanted): no new namespaces, but the worker
  still runs as a unique unprivileged uid/gid (no groups, no new privileges, a process limit), so
  file permissions do the hiding ("uid+limits"); the grader asks for this only when that uid can
  reach the interpreter and the packages (``drop_uid``);
- elsewhere (macOS, locked-down containers as an ordinary user): resource limits and descendant
  cleanup only.

Resource limits always: address space, CPU seconds, file size, core dumps off, and (with a
unique uid) the number of processes; memory and process count of the whole sandbox by a cgroup
where the grader could make one (it counts shared memory, memfd and tmpfs pages too).
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
ISOLATION_FAILED = 71  # exit status: the isolation could not be built (the grader falls back)
SANDBOX_UID = 1000  # the learner's uid inside the nested user namespace (no one is root there)

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


def prctl(option: int, value: int, arg3: int = 0) -> bool:
    try:
        return libc().prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(arg3), 0, 0) == 0
    except Exception:
        return False


def unshare(flags: int) -> None:
    _check(libc().unshare(flags), "unshare")


def mount(source, target: str, fstype, flags: int, data=None) -> None:
    enc = lambda s: s.encode() if isinstance(s, str) else s  # noqa: E731
    _check(libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(0, f"pivot_root: unknown system call number on {platform.machine()}")
    _check(libc().syscall(number, new_root.encode(), put_old.encode()), "pivot_root")


def umount(target: str, flags: int = 0) -> None:
    _check(libc().umount2(target.encode(), flags), f"umount {target}")


def clear_capabilities() -> None:
    """Empty effective, permitted and inheritable sets (capset, version 3)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc().capset(header, data), "capset")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
WRITABLE = ("/tmp", "/dev/shm")  # the only writable mounts (size-capped tmpfs)


def _mount_points() -> list[tuple[str, int, bool]]:
    """(mount point, flags to keep, read-only?) for every mount in this namespace, parents first."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")
            opts = fields[5].split(",")
            flags = 0
            for opt in opts:
                flags |= _MOUNT_FLAGS.get(opt, 0)
            points.append((point, flags, "ro" in opts))
    return points


def _place(new_root: str, entry: list) -> None:
    """One allow-list entry in the new root: ``["bind", src, dst]`` or ``["symlink", target, dst]``."""
    kind, src, dst = entry
    target = os.path.join(new_root, dst.lstrip("/"))
    if kind == "symlink":
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(src, target)
        return
    if not os.path.exists(src):
        return
    if os.path.isdir(src):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    mount(src, target, None, MS_BIND | MS_REC)


def build_root(config: dict) -> str:
    """A new root filesystem from the allow list; return the learner's work directory in it.

    Runs in fresh mount and PID namespaces (as PID 1). Afterwards only /tmp (the scratch tmpfs,
    ``tmp_mb``) and /dev/shm are writable and the old root is gone from this namespace.
    """
    new = config["scratch"]
    os.umask(0o022)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    # the scratch /tmp first: an allowed path under /tmp (a virtual environment there, say) is
    # bound on top of it rather than covered by it
    os.makedirs(os.path.join(new, "tmp"), exist_ok=True)
    mount("tmpfs", os.path.join(new, "tmp"), "tmpfs", MS_NOSUID | MS_NODEV, f"size={config['tmp_mb']}m,mode=1777")
    for entry in sorted(config["binds"], key=lambda e: (e[2].rstrip("/").count("/"), e[2])):
        _place(new, entry)
    for path in config.get("hidden", []):
        target = os.path.join(new, path.lstrip("/"))
        if os.path.isdir(target):
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0555")
        elif os.path.isfile(target):
            mount("/dev/null", target, None, MS_BIND)
    os.makedirs(os.path.join(new, "dev", "shm"), exist_ok=True)
    mount("tmpfs", os.path.join(new, "dev", "shm"), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
          f"size={config['shm_mb']}m,mode=1777")
    os.makedirs(os.path.join(new, "proc"), exist_ok=True)
    # the learner sees only the processes of its own PID namespace (mounted while the machine's
    # /proc is still in view: in a user namespace the kernel allows a new one only then)
    mount("proc", os.path.join(new, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    old = os.path.join(new, ".old-root")
    os.makedirs(old)
    pivot_root(new, old)
    os.chdir("/")
    umount("/.old-root", MNT_DETACH)
    os.rmdir("/.old-root")
    for point, keep, _ in _mount_points():
        if point in WRITABLE or point == "/proc" or point.startswith("/proc/"):
            continue
        try:
            mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep)
        except OSError:
            pass  # checked below
    writable = [p for p, _, ro in _mount_points()
                if not ro and p not in WRITABLE and not (p == "/proc" or p.startswith("/proc/"))]
    if writable:
        raise OSError(0, f"could not make {', '.join(writable)} read-only")
    work = "/tmp/work"
    os.makedirs(work)
    return work


def _drop_bounding_set() -> None:
    """Empty the capability bounding set: nothing can come back through execve."""
    for cap in range(64):
        if not prctl(PR_CAPBSET_DROP, cap) and ctypes.get_errno() != 22:  # EINVAL: past the last one
            raise OSError(ctypes.get_errno(), "could not drop the capability bounding set")


def lock_down(mode: str, uid: int) -> None:
    """Give up every privilege for good (mounts made before this can no longer change)."""
    if mode in ("root", "uid"):
        try:
            _drop_bounding_set()
        except OSError:
            if mode == "root":
                raise  # without namespaces ("uid") the uid change below clears the capabilities anyway
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif mode == "userns":
        # a nested user namespace that maps only SANDBOX_UID (to our uid outside): nobody is root
        # in it, and mounts inherited from the namespace that made them are locked
        unshare(CLONE_NEWUSER | CLONE_NEWNS)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{SANDBOX_UID} 0 1")
        _write("/proc/self/gid_map", f"{SANDBOX_UID} 0 1")
        _drop_bounding_set()  # a new user namespace starts with a full one
        os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        clear_capabilities()
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    if not prctl(PR_SET_NO_NEW_PRIVS, 1):
        raise OSError(ctypes.get_errno(), "could not set no_new_privs")


def apply_limits(config: dict, own_uid: bool) -> None:
    mem = config["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (config["cpu_s"], config["cpu_s"] + 5))
    fsize = config["fsize_mb"] << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if own_uid:
        resource.setrlimit(resource.RLIMIT_NPROC, (config["nproc"], config["nproc"]))


def become_worker(config: dict, req_fd: int, resp_fd: int, mode: str, warm: bool = False) -> None:
    """In the forked child: isolate, limit, drop privileges, exec the worker (``warm``: become the
    worker in this process, see :func:`continue_as_worker`). Never returns."""
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.set_inheritable(req_fd, True)
    os.set_inheritable(resp_fd, True)
    uid = config["uid"]
    scratch = config["scratch"]
    pythonpath = config["pythonpath_unisolated"]
    if mode in ("root", "userns"):
        unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC)
        scratch = build_root(config)
        pythonpath = config["pythonpath"]
    if mode in ("root", "uid"):  # the learner's code runs as a fresh unprivileged uid
        os.chown(scratch, uid, uid)
    os.chmod(scratch, 0o700)
    apply_limits(config, own_uid=(mode in ("root", "uid")))
    if mode in ("root", "userns"):
        lock_down(mode, uid)
    elif mode == "uid":  # root without namespaces: file permissions do the hiding
        try:
            lock_down("uid", uid)
        except OSError as exc:  # said, and reported as limits only
            os.write(2, f"sandbox: could not run the learner's code as another uid ({exc}); limits only\n".encode())
            mode = "none"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": scratch, "TMPDIR": scratch,
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": os.path.join(scratch, "mpl"),
        "IPYTHONDIR": os.path.join(scratch, "ipython"), "PYTHONPATH": os.pathsep.join(pythonpath),
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1", "COURSE_FAST": "1", "COURSE_SANDBOX": "1", "LC_ALL": "C.UTF-8",
        "COURSE_SANDBOX_ISOLATION": ISOLATION[mode],
    }
    os.chdir(scratch)
    if warm:
        continue_as_worker(config, req_fd, resp_fd, env, scratch, pythonpath)
    os.execve(config["python"], [config["python"], "-m", "grader.engine.worker", str(req_fd), str(resp_fd)], env)


def continue_as_worker(config: dict, req_fd: int, resp_fd: int, env: dict, scratch: str,
                       pythonpath: list[str]) -> None:
    """The warm path's end of :func:`become_worker` (a process forked from the zygote, which has
    imported torch and the engine but nothing of the library or the grader's tests): what
    ``execve`` would do, done by hand, then serve. Every step of the isolation above has already
    run in this process, in the same order as on the cold path. Never returns."""
    import importlib
    import linecache

    from grader.engine import zygote

    zygote.forget_server_state()
    taint = zygote.tainted_modules()
    if taint:  # the zygote must never hold the library or the tests: refuse rather than leak
        os.write(2, f"sandbox: the zygote had imported {', '.join(taint[:5])}: refused\n".encode())
        os._exit(70)
    zygote.close_fds_except({0, 1, 2, req_fd, resp_fd})  # the status pipe too: the supervisor reads EOF
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [os.path.join(os.path.dirname(__file__), "worker.py"), str(req_fd), str(resp_fd)]
    sys.path[:] = [scratch, *pythonpath, *config.get("base_path", [])]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    linecache.clearcache()
    sys.dont_write_bytecode = True
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has them
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    code = 0
    try:
        from grader.engine.worker import main as worker_main

        worker_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - as an uncaught exception would end the cold worker
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def join_cgroups(paths: list[str]) -> list[str]:
    """Move this process (and so everything it starts) into the sandbox's cgroups; return notes."""
    notes = []
    for path in paths:
        try:
            _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
        except OSError as exc:
            notes.append(f"could not join the cgroup {path} ({exc.strerror}); limits only")
    return notes


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


ISOLATION = {"root": "namespaces+uid", "userns": "namespaces+uid", "uid": "uid+limits", "none": "limits"}


def choose_mode(config: dict) -> str:
    """"root"/"userns": namespaces; "uid": root without namespaces, another uid (when the grader
    found the interpreter and the packages readable by one: ``drop_uid``); "none": limits only."""
    if not config.get("isolate", True) or not sys.platform.startswith("linux"):
        return _unisolated(config)
    if os.geteuid() == 0:
        return "root"
    return "userns" if config.get("allow_userns", True) else "none"


def _unisolated(config: dict) -> str:
    if os.name == "posix" and os.geteuid() == 0 and config.get("drop_uid"):
        return "uid"
    return "none"


def enter_namespaces(mode: str) -> str:
    """Before forking the worker: a new PID namespace (the worker is its PID 1), inside a user
    namespace of our own when not root. Returns the mode that applies."""
    if mode == "root":
        unshare(CLONE_NEWPID)
    elif mode == "userns":
        outer_uid, outer_gid = os.getuid(), os.getgid()
        unshare(CLONE_NEWUSER | CLONE_NEWPID)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {outer_uid} 1")
        _write("/proc/self/gid_map", f"0 {outer_gid} 1")
    return mode


def main() -> None:
    run(json.loads(sys.argv[1]))


def run(config: dict, warm: bool = False) -> None:
    """The supervisor's life (see the module's docstring); ``warm``: forked from the zygote, the
    worker is this process's fork rather than a new interpreter. Never returns."""
    req_fd, resp_fd = config["req_fd"], config["resp_fd"]
    notes = join_cgroups(config.get("cgroups", []))
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    mode = choose_mode(config)
    if mode in ("root", "userns"):
        try:
            enter_namespaces(mode)
        except OSError as exc:
            notes.append(f"isolation unavailable ({exc}); limits only")
            mode = _unisolated(config)
    for note in notes:
        sys.stderr.write(f"sandbox: {note}\n")
    status_r, status_w = os.pipe()  # the child reports a failed isolation step here
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        try:
            become_worker(config, req_fd, resp_fd, mode, warm)
        except BaseException as exc:  # noqa: BLE001 - report and die
            if mode in ("root", "userns"):  # the grader starts a sandbox without namespaces instead
                os.write(status_w, f"isolation unavailable ({exc})\n".encode())
                os._exit(ISOLATION_FAILED)
            os.write(2, f"sandbox: could not start the worker: {exc}\n".encode())
        os._exit(70)
    os.close(status_w)
    os.close(req_fd)
    os.close(resp_fd)
    note = os.read(status_r, 4096).decode(errors="replace")  # EOF once the child execs (or serves)
    os.close(status_r)
    if note:
        sys.stderr.write(f"sandbox: {note}")
        os.waitpid(pid, 0)
        os._exit(ISOLATION_FAILED)

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
    code = os.waitstatus_to_exitcode(status) if status else 0
    os._exit(128 - code if code < 0 else code & 0xFF)  # killed by signal N: 128 + N, as a shell says


if __name__ == "__main__":
    main()
