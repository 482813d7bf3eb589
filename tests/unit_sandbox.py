"""Run a command under the seccomp part of a systemd unit's sandbox, read from the unit file itself.

What is emulated, as systemd 252 builds it (src/core/execute.c, src/shared/seccomp-util.c):

- ``SystemCallFilter=``: the lines are applied in order. The first line decides the list's kind: a
  plain first line starts an allow-list (systemd adds ``@default`` to it), a ``~`` first line a
  deny-list. Later plain lines add to an allow-list (remove from a deny-list); later ``~`` lines
  remove from an allow-list (add to a deny-list). Groups (``@name``) are expanded, recursively, by
  ``systemd-analyze syscall-filter`` on this machine, so the groups are systemd's own. A denied call
  kills the process with SIGSYS (``SCMP_ACT_KILL_PROCESS``), as systemd does when
  ``SystemCallErrorNumber=`` is not set (with it set, the call fails with that errno).
- ``SystemCallArchitectures=native``: calls from another ABI kill the process (libseccomp's default).
- ``RestrictAddressFamilies=``: ``socket()`` with a family not listed fails with EAFNOSUPPORT, in a
  second, stacked filter (systemd stacks it the same way).

Not emulated (not seccomp, or not syscall-level): the file-system, device, user and capability parts
of the unit (ProtectSystem, DevicePolicy, User, CapabilityBoundingSet ...), and the seccomp-based
LockPersonality, RestrictRealtime, RestrictNamespaces and RestrictSUIDSGID (argument filters on
calls the allow-list already permits; the agent makes none of those calls).

CLI: ``python tests/unit_sandbox.py systemd/lews-agent.service -- agent run --config FILE``.
Needs libseccomp (Debian ``libseccomp2``) and ``systemd-analyze`` (Debian ``systemd``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import pwd
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
_NR_SCMP_ERROR = -1


def scmp_act_errno(number: int) -> int:
    return 0x00050000 | (number & 0x0000FFFF)


class SandboxUnavailable(RuntimeError):
    """libseccomp or systemd-analyze is missing on this machine (the message names the package)."""


@dataclass
class SeccompPolicy:
    """The seccomp part of a unit: an allow-list (or deny-list) of syscall names and address families."""

    allow_list: bool
    syscalls: set[str]
    errno_number: int | None = None  # SystemCallErrorNumber=, None: kill with SIGSYS
    native_only: bool = False
    address_families: set[str] | None = None  # None: no RestrictAddressFamilies=
    lines: list[str] = field(default_factory=list)

    def denies(self, name: str) -> bool:
        return (name not in self.syscalls) if self.allow_list else (name in self.syscalls)


def unit_settings(unit_text: str, key: str) -> list[str]:
    """All values of ``key=`` in the unit's [Service] section, in file order (comments skipped)."""
    values, section = [], ""
    for raw in unit_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        name, sep, value = line.partition("=")
        if sep and section == "Service" and name.strip() == key:
            values.append(value.strip())
    return values


@cache
def _group_members(group: str) -> tuple[str, ...]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise SandboxUnavailable("systemd-analyze not found: apt-get install systemd")
    out = subprocess.run(
        [tool, "syscall-filter", "--no-pager", group], capture_output=True, text=True, check=True
    ).stdout
    members = []
    for line in out.splitlines()[1:]:  # the first line is the group's own name
        item = line.strip()
        if item and not item.startswith("#"):
            members.append(item)
    return tuple(members)


def expand(names: list[str]) -> set[str]:
    """Syscall names, with every ``@group`` expanded recursively (systemd's own tables)."""
    out: set[str] = set()
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if not name.startswith("@"):
            out.add(name)
        elif name not in seen:
            seen.add(name)
            todo.extend(_group_members(name))
    return out


def policy_from_unit(unit_text: str) -> SeccompPolicy:
    lines = unit_settings(unit_text, "SystemCallFilter")
    policy = SeccompPolicy(allow_list=True, syscalls=set(), lines=lines)
    first = True
    for line in lines:
        if not line:  # an empty assignment resets the list
            policy.syscalls, first = set(), True
            continue
        invert = line.startswith("~")
        names = line.lstrip("~").split()
        names = [n.split(":")[0] for n in names]  # name:errno per call: the call is denied either way
        if first:
            policy.allow_list = not invert
            if policy.allow_list:
                policy.syscalls |= expand(["@default"])
            first = False
        targets = expand(names)
        if invert == (not policy.allow_list):  # same polarity as the list: add
            policy.syscalls |= targets
        else:
            policy.syscalls -= targets
    error = unit_settings(unit_text, "SystemCallErrorNumber")
    if error and error[-1] and error[-1] != "kill":
        policy.errno_number = int(error[-1]) if error[-1].isdigit() else int(getattr(errno, error[-1]))
    archs = unit_settings(unit_text, "SystemCallArchitectures")
    policy.native_only = bool(archs) and archs[-1] == "native"
    families = unit_settings(unit_text, "RestrictAddressFamilies")
    if families and families[-1] and families[-1] != "none":
        policy.address_families = set(" ".join(families).split())
    return policy


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    path = ctypes.util.find_library("seccomp")
    if path is None:
        raise SandboxUnavailable("libseccomp not found: apt-get install libseccomp2")
    lib = ctypes.CDLL(path, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_void_p,
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")


def install(policy: SeccompPolicy) -> None:
    """Load the policy's filters into this process (irreversible; children inherit them)."""
    lib = _lib()
    # The address-family filter first: the syscall filter forbids seccomp() itself (systemd also loads
    # the system-call filter last).
    if policy.address_families is not None:
        _install_families(lib, policy.address_families)
    denied = SCMP_ACT_KILL_PROCESS if policy.errno_number is None else scmp_act_errno(policy.errno_number)
    default, action = (denied, SCMP_ACT_ALLOW) if policy.allow_list else (SCMP_ACT_ALLOW, denied)
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError(ctypes.get_errno(), "seccomp_init failed")
    try:
        for name in sorted(policy.syscalls):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # not a call on this architecture (e.g. arm_fadvise64_64 on x86-64)
            _check(lib.seccomp_rule_add(ctx, action, nr, 0), f"seccomp rule for {name}")
        _check(lib.seccomp_load(ctx), "seccomp_load")
    finally:
        lib.seccomp_release(ctx)


def _install_families(lib: ctypes.CDLL, allowed: set[str]) -> None:
    keep = {int(getattr(socket, name)) for name in allowed}
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    try:
        nr = lib.seccomp_syscall_resolve_name(b"socket")
        for family in range(0, 64):  # AF_MAX is 46 on Linux 6.x: every other family is refused
            if family in keep:
                continue
            cmp = _ArgCmp(0, SCMP_CMP_EQ, family, 0)
            rc = lib.seccomp_rule_add_array(ctx, scmp_act_errno(errno.EAFNOSUPPORT), nr, 1, ctypes.byref(cmp))
            _check(rc, f"seccomp rule for socket family {family}")
        _check(lib.seccomp_load(ctx), "seccomp_load (address families)")
    finally:
        lib.seccomp_release(ctx)


def available() -> str:
    """'' when the sandbox can be built here, else why not (for a pytest skip reason)."""
    try:
        _lib()
        _group_members("@default")
    except (SandboxUnavailable, OSError, subprocess.CalledProcessError) as exc:
        return str(exc)
    return ""


PR_SET_KEEPCAPS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 8, 47, 2
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def become(user: str) -> None:
    """Drop root for ``user`` (the unit's User=): groups, gid, uid, HOME. Root code paths differ (SQLite
    fchowns its journal to the database's owner when run as root, a call the filter denies).

    The user keeps CAP_DAC_OVERRIDE (ambient, so it survives exec) only so it can read the test
    machine's interpreter and checkout wherever they lie (a venv under /root): file access is not
    what this emulates; the unit's User=, ProtectSystem= and friends do that on the gateway."""
    entry = pwd.getpwnam(user)
    libc = ctypes.CDLL(None, use_errno=True)
    caps = (1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH)
    if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(caps, caps, caps), _CapData(0, 0, 0))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAP_AMBIENT_RAISE)")
    os.environ.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)


def main(argv: list[str]) -> int:
    """``[--strict] [--user NAME] UNIT_FILE -- COMMAND...``. ``--strict``: a denied call kills (SIGSYS)
    even where the unit sets SystemCallErrorNumber=, so a call the program needs and the unit denies
    cannot hide behind an errno. ``--user``: run as that user (when started as root)."""
    args, strict, user = list(argv), False, ""
    while args and args[0] in ("--strict", "--user"):
        if args.pop(0) == "--strict":
            strict = True
        elif args:
            user = args.pop(0)
    if "--" not in args or args.index("--") != 1 or len(args) < 3:
        print("usage: unit_sandbox.py [--strict] [--user NAME] UNIT -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    policy = policy_from_unit(Path(args[0]).read_text(encoding="utf-8"))
    if strict:
        policy.errno_number = None
    command = args[2:]
    program = shutil.which(command[0]) or command[0]
    if user and os.geteuid() == 0:
        become(user)
    install(policy)
    os.execv(program, command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
