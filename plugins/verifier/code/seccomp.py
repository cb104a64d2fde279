"""The sandbox's syscall filter: a seccomp program that bubblewrap installs (``--seccomp FD``)
on the runner just before it starts, so that the runner, every test process and everything
they start inherit it (a seccomp filter can be added to, never removed).

The policy is a deny list on top of the namespaces, the dropped capabilities and the rlimits:
every system call is allowed except the ones below, which no test program needs and which are
either the kernel's usual attack surface or a way around the other layers. A denied call fails
with ``EPERM`` ("Operation not permitted"); nothing is killed, so a program that probes for a
feature sees the same error an unprivileged user would. Two refinements:

* ``clone`` is denied (``EPERM``) only when its flags ask for a new namespace (``CLONE_NEW*``):
  plain ``clone`` is how threads and processes start;
* ``clone3`` fails with ``ENOSYS`` ("not implemented"): its flags sit in a struct that a
  filter cannot read, and on ``ENOSYS`` the C library falls back to ``clone``, whose flags it
  can (the approach of Docker's and Flatpak's default profiles).

A system call made through another ABI than the machine's own (on x86-64, the 32-bit
``int 0x80`` entry or the x32 ABI), where the numbers differ and a deny list by number means
nothing, kills the process (libseccomp's architecture check).

The program is compiled by libseccomp (the system's ``libseccomp.so.2``, through the
``pyseccomp`` ctypes binding), once per process.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile
from typing import Any

# (system call, why it is denied); the order is the documentation's.
DENIED: tuple[tuple[str, str], ...] = (
    ("ptrace", "reads and writes other processes' memory and registers"),
    ("process_vm_readv", "reads another process's memory"),
    ("process_vm_writev", "writes another process's memory"),
    ("mount", "changes the file-system view"),
    ("umount2", "changes the file-system view"),
    ("pivot_root", "changes the root file system"),
    ("chroot", "changes the root folder"),
    ("fsopen", "the new mount API (as mount)"),
    ("fsconfig", "the new mount API (as mount)"),
    ("fsmount", "the new mount API (as mount)"),
    ("fspick", "the new mount API (as mount)"),
    ("move_mount", "the new mount API (as mount)"),
    ("open_tree", "the new mount API (as mount)"),
    ("mount_setattr", "the new mount API (as mount)"),
    ("unshare", "creates namespaces (the kernel's largest unprivileged attack surface)"),
    ("setns", "enters other namespaces"),
    ("keyctl", "the kernel keyring: shared kernel state, not namespaced"),
    ("add_key", "the kernel keyring"),
    ("request_key", "the kernel keyring"),
    ("bpf", "loads programs into the kernel"),
    ("perf_event_open", "kernel profiling: side channels and a history of exploits"),
    ("userfaultfd", "stalls kernel page faults, the usual tool of kernel race exploits"),
    ("io_uring_setup", "an asynchronous syscall path that bypasses per-call filters"),
    ("io_uring_enter", "as io_uring_setup"),
    ("io_uring_register", "as io_uring_setup"),
    ("kexec_load", "replaces the running kernel"),
    ("kexec_file_load", "replaces the running kernel"),
    ("init_module", "loads kernel modules"),
    ("finit_module", "loads kernel modules"),
    ("delete_module", "unloads kernel modules"),
    ("reboot", "reboots the machine"),
    ("swapon", "changes the machine's swap"),
    ("swapoff", "changes the machine's swap"),
)

# The namespace flags of clone(2) (its first argument on every architecture). CLONE_NEWTIME
# (0x80) is left out on purpose: in clone(2) that bit is part of the exit signal.
CLONE_NAMESPACE_FLAGS: tuple[tuple[str, int], ...] = (
    ("CLONE_NEWNS", 0x00020000),
    ("CLONE_NEWCGROUP", 0x02000000),
    ("CLONE_NEWUTS", 0x04000000),
    ("CLONE_NEWIPC", 0x08000000),
    ("CLONE_NEWUSER", 0x10000000),
    ("CLONE_NEWPID", 0x20000000),
    ("CLONE_NEWNET", 0x40000000),
)

DENIED_ERRNO = errno.EPERM
CLONE3_ERRNO = errno.ENOSYS


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python binding) is missing: the message says what to install."""


def _seccomp() -> Any:
    try:
        import pyseccomp
    except (ImportError, OSError, AttributeError, TypeError) as e:  # no libseccomp.so.2
        raise SeccompUnavailable(
            f"the sandbox's syscall filter needs libseccomp (apt-get install libseccomp2, and "
            f"the pyseccomp package: `make setup`): {e}"
        ) from None
    return pyseccomp


def syscall_number(name: str) -> int:
    """The machine's own number of system call ``name``, or -1 when it has none here."""
    sc = _seccomp()
    nr = int(sc.resolve_syscall(sc.Arch.NATIVE, name))
    return nr if nr >= 0 else -1


def build_filter() -> Any:
    """The policy as a libseccomp filter (``pyseccomp.SyscallFilter``), not yet compiled."""
    sc = _seccomp()
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name, _why in DENIED:
        if syscall_number(name) >= 0:  # e.g. a call this architecture does not have
            f.add_rule(sc.ERRNO(DENIED_ERRNO), name)
    for _flag, bit in CLONE_NAMESPACE_FLAGS:
        f.add_rule(sc.ERRNO(DENIED_ERRNO), "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    if syscall_number("clone3") >= 0:
        f.add_rule(sc.ERRNO(CLONE3_ERRNO), "clone3")
    return f


@functools.cache
def bpf_program() -> bytes:
    """The policy compiled to a classic BPF program (what ``--seccomp`` reads): an array of
    8-byte ``struct sock_filter``, machine byte order. Built once per process."""
    f = build_filter()
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)
        fh.seek(0)
        program = fh.read()
    if not program or len(program) % 8:
        raise SeccompUnavailable(f"libseccomp exported a {len(program)}-byte filter")
    return program


def program_fd() -> int:
    """A new file descriptor that reads as the compiled program and then EOF (the read end of
    a pipe; the program, a few hundred bytes, fits in its buffer). One per sandbox: bubblewrap
    reads it to the end, so two sandboxes cannot share one. The caller closes it."""
    program = bpf_program()
    r, w = os.pipe()
    try:
        view = memoryview(program)
        while view:
            view = view[os.write(w, view) :]
    except OSError:
        os.close(r)
        raise
    finally:
        os.close(w)
    return r
