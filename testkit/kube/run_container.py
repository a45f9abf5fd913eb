"""Run one container's process in a private mount namespace (used by the node agent).

``python run_container.py SPEC.json``: SPEC says the root folder to build, the image's
folders, the volume mounts, the working directory, argv and environment. This script

1. unshares the mount namespace and makes every mount private (nothing leaks to the host);
2. mounts a tmpfs on the root folder and binds the host's top-level folders into it (so
   the host's programs, the repository and its virtualenv are there), except ``/run``,
   which is private, and the folders the image brings (e.g. ``/app``); a mount point
   that is missing in a host folder (e.g. ``/etc/secrets``) is made on a tmpfs laid over
   that folder, which holds binds of the folder's entries: the host is never changed;
3. binds the image's folders and the pod's volumes at their mount paths, then puts back
   the host paths the programs need (the repository, the virtualenv, Python) if a volume
   hid them;
4. chroots into the root folder, changes to the working directory and execs the command.

The process keeps its pid, so the agent's process group and signals reach the command.
Root is required (mount namespaces); there are no user, network or pid namespaces.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: str, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(
            src.encode(),
            dst.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {src} {dst}",
    )


def bind(src: str, dst: str, readonly: bool = False) -> None:
    mount(src, dst, None, MS_BIND | MS_REC)
    if readonly:
        mount("none", dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def resolve_in_root(root: Path, path: str) -> Path:
    """The host path of ``path`` seen from inside ``root`` (symlinks resolved inside root)."""
    parts = [p for p in path.split("/") if p]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink() and hops < 40:
            hops += 1
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            if target.startswith("/"):
                current = root
            continue
        current = candidate
    return current


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    # die with the node agent's pod thread (and so with the agent, even when it is killed)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != spec.get("agent_pid", os.getppid()):
        os._exit(137)
    root = Path(spec["root"])
    root.mkdir(parents=True, exist_ok=True)
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", str(root), "tmpfs", MS_NOSUID, "mode=755")

    image_tops = {p.strip("/").split("/")[0] for p in spec.get("image_files", {})}
    kinds: dict[Path, str] = {root: "tmpfs"}  # mount point -> host | tmpfs | volume | image
    for entry in sorted(os.listdir("/")):
        host = Path("/") / entry
        inside = root / entry
        if entry in image_tops or entry in ("run", "lost+found"):
            continue
        if host.is_symlink():
            os.symlink(os.readlink(host), inside)
        elif host.is_dir():
            inside.mkdir()
            bind(str(host), str(inside))
            kinds[inside] = "host"
    (root / "run").mkdir(exist_ok=True)

    def kind_of(path: Path) -> str:
        for candidate in (path, *path.parents):
            if candidate in kinds:
                return kinds[candidate]
        return "tmpfs"

    def shadow(path: Path) -> None:
        """Replace the host folder bound at ``path`` by a tmpfs holding binds of its entries,
        so a mount point can be created there without touching the host."""
        host = Path("/") / path.relative_to(root)
        entries = sorted(os.listdir(host))
        mount("tmpfs", str(path), "tmpfs", MS_NOSUID, "mode=755")
        kinds[path] = "tmpfs"
        for entry in entries:
            src, dst = host / entry, path / entry
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            elif src.is_dir():
                dst.mkdir()
                bind(str(src), str(dst))
                kinds[dst] = "host"
            elif src.exists():
                dst.touch()
                bind(str(src), str(dst))

    def place(src: str, dst: str, readonly: bool, kind: str) -> None:
        target = resolve_in_root(root, dst)
        is_dir = Path(src).is_dir()
        if not target.exists():
            parent = target.parent
            while not parent.exists():
                parent = parent.parent
            where = kind_of(parent)
            if where == "host":
                shadow(parent)
            elif where == "image":
                print(
                    f"[node-agent] cannot mount {dst}: inside the image's read-only {parent}",
                    file=sys.stderr,
                    flush=True,
                )
                return
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        bind(src, str(target), readonly)
        kinds[target] = kind

    for dst, src in sorted(spec.get("image_files", {}).items(), key=lambda kv: kv[0].count("/")):
        place(src, dst, True, "image")
    for m in sorted(spec.get("mounts", []), key=lambda m: m["path"].rstrip("/").count("/")):
        place(m["source"], m["path"], m.get("readOnly", False), "volume")

    # A volume mounted over a parent of the programs (e.g. an emptyDir at /tmp while the
    # checkout sits under /tmp) would hide them: put those host paths back on top.
    for keep in spec.get("keep", []):
        inside = resolve_in_root(root, keep)
        try:
            same = os.path.samestat(os.stat(inside), os.stat(keep))
        except OSError:
            same = False
        if not same and Path(keep).is_dir():
            inside.mkdir(parents=True, exist_ok=True)
            bind(keep, str(inside))

    os.chroot(root)
    os.chdir(spec.get("workingDir") or "/")
    argv = spec["argv"]
    env = spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"[node-agent] exec {argv[0]!r} failed: {exc}", file=sys.stderr, flush=True)
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1])
