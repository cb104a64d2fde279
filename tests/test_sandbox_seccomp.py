"""The sandbox's syscall filter (``plugins/verifier/code/seccomp.py``).

Three kinds of checks:

* per denied call, a program run in the real bubblewrap sandbox makes the call (raw
  ``syscall(2)`` through ctypes, the machine's own number) and must see ``-1`` / ``EPERM``;
* for the calls where the kernel itself would answer something else in the same sandbox (the
  arguments are chosen so: a bad pointer, a bad flag, a process that does not exist), the same
  program with the filter left out must see that other answer, worked out below from the
  kernel's checks; so these tests fail when the filter is missing. Calls that the kernel
  refuses with ``EPERM`` anyway for lack of a capability (module loading, kexec, reboot, swap,
  most of the mount API) are checked by the third kind;
* the compiled program itself, run by a small classic-BPF interpreter written here on
  hand-built ``struct seccomp_data`` inputs: every denied number -> ``ERRNO(EPERM)``, ordinary
  calls -> ``ALLOW``, another ABI -> kill.

Plus ordinary programs (threads, a multiprocessing pool, subprocesses, fork) still pass, and
the filter is really on in the test program and in its children (``Seccomp: 2`` in
``/proc/self/status``) including when or1 runs as root and bubblewrap as ``sandbox_uid``.
"""

from __future__ import annotations

import errno
import json
import os
import struct

import pytest

from or1_plugins.verifier.code import seccomp
from or1_plugins.verifier.code.sandbox import Limits, Sandbox

BAD_PTR = 1  # an address no process has mapped: the kernel's copy from it fails with EFAULT
NO_PID = 0x7FFFFFF0  # above any pid_max (at most 2**22): no such process
NO_FD = 999_999  # above the sandbox's open-file limit: never an open descriptor
SIGCHLD = 17

# Per denied call: its arguments, and what the kernel answers in the sandbox WITHOUT the filter
# (None: EPERM anyway, for lack of a capability, or an answer that differs between kernels).
CALLS: dict[str, tuple[tuple[int, ...], int | None]] = {
    # PTRACE_ATTACH (16) to a pid that does not exist: the lookup fails first -> ESRCH.
    "ptrace": ((16, NO_PID, 0, 0), errno.ESRCH),
    # flags must be 0: checked before anything else -> EINVAL.
    "process_vm_readv": ((1, 0, 0, 0, 0, 1), errno.EINVAL),
    "process_vm_writev": ((1, 0, 0, 0, 0, 1), errno.EINVAL),
    # mount copies the type string from user memory before any permission check -> EFAULT.
    "mount": ((BAD_PTR, BAD_PTR, BAD_PTR, 0, 0), errno.EFAULT),
    # unknown umount flag bits are rejected before the permission check -> EINVAL.
    "umount2": ((BAD_PTR, 0x8000_0000), errno.EINVAL),
    "pivot_root": ((BAD_PTR, BAD_PTR), None),
    # chroot looks the path up before checking CAP_SYS_CHROOT -> EFAULT.
    "chroot": ((BAD_PTR,), errno.EFAULT),
    "fsopen": ((BAD_PTR, 0), None),
    "fsconfig": ((-1, 0, 0, 0, 0), None),
    "fsmount": ((-1, 0, 0), None),
    "fspick": ((-1, BAD_PTR, 0), None),
    "move_mount": ((-1, BAD_PTR, -1, BAD_PTR, 0), None),
    "open_tree": ((-1, BAD_PTR, 0x4000_0000), None),
    "mount_setattr": ((-1, BAD_PTR, 0, BAD_PTR, 0), None),
    # unshare(0) asks for nothing and succeeds -> 0.
    "unshare": ((0,), 0),
    # fd -1 is not a namespace file -> EBADF.
    "setns": ((-1, 0), errno.EBADF),
    # an operation number keyctl does not know -> EOPNOTSUPP.
    "keyctl": ((0x7FFF_FFFF, 0, 0, 0, 0), errno.EOPNOTSUPP),
    # the key type string is copied from user memory first -> EFAULT.
    "add_key": ((BAD_PTR, BAD_PTR, 0, 0, 0), errno.EFAULT),
    "request_key": ((BAD_PTR, BAD_PTR, 0, 0), errno.EFAULT),
    "bpf": ((0, BAD_PTR, 8), None),  # EPERM before 6.6 (unprivileged_bpf_disabled), EFAULT after
    "perf_event_open": ((BAD_PTR, 0, -1, -1, 0), None),  # depends on perf_event_paranoid
    "userfaultfd": ((0,), None),  # depends on vm.unprivileged_userfaultfd
    "io_uring_setup": ((1, BAD_PTR), None),  # depends on kernel.io_uring_disabled
    # no flags, a descriptor that is not open -> EBADF.
    "io_uring_enter": ((NO_FD, 0, 0, 0, 0, 0), errno.EBADF),
    "io_uring_register": ((NO_FD, 0, 0, 0), errno.EBADF),
    "kexec_load": ((0, 0, 0, 0xFFFF_0000), None),
    "kexec_file_load": ((-1, -1, 0, 0, 0xFF), None),
    "init_module": ((BAD_PTR, 0, BAD_PTR), None),
    "finit_module": ((-1, BAD_PTR, 0), None),
    "delete_module": ((BAD_PTR, 0), None),
    "reboot": ((0, 0, 0, 0), None),  # wrong magic numbers
    "swapon": ((BAD_PTR, 0), None),
    "swapoff": ((BAD_PTR,), None),
}


def call_program(nr: int, args: tuple[int, ...]) -> str:
    """A program that makes system call ``nr`` and prints ``[return value, errno]``; a child
    that a clone() call created (return value 0 in the child) exits at once."""
    return (
        "import ctypes, json, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        "ctypes.set_errno(0)\n"
        f"r = libc.syscall(*[ctypes.c_long(a) for a in {[nr, *args]!r}])\n"
        "e = ctypes.get_errno()\n"
        f"if r == 0 and {nr} == {seccomp.syscall_number('clone')}:\n"
        "    os._exit(0)\n"
        "print(json.dumps([r, e]))\n"
    )


@pytest.fixture(scope="module")
def filtered() -> Sandbox:
    # a generous wall-clock limit: the subject is the kernel's answers, not the time, and a
    # loaded 2-core CI machine took over 10 s to start one sandboxed interpreter
    return Sandbox("bwrap", Limits(test_timeout_s=30.0))


@pytest.fixture(scope="module")
def unfiltered() -> Sandbox:
    return Sandbox("bwrap", Limits(test_timeout_s=30.0), syscall_filter=False)


def run_stdout(sandbox: Sandbox, program: str, stdin: str = "") -> str:
    """Run ``program`` as one stdin test in ``sandbox``; its stdout (the test must run)."""
    res = sandbox.run(program, [{"i": 0, "kind": "stdio", "input": stdin}], wall_s=60.0)
    rec = res.records.get(0)
    assert rec is not None and rec["status"] == "ran", (rec, res.stderr)
    return rec["out"]


def attempt(sandbox: Sandbox, name: str, args: tuple[int, ...]) -> tuple[int, int]:
    nr = seccomp.syscall_number(name)
    assert nr >= 0, name
    r, e = json.loads(run_stdout(sandbox, call_program(nr, args)))
    return r, e


# ------------------------------------------------------------------ in the real sandbox


def test_every_denied_call_has_a_case() -> None:
    assert sorted(CALLS) == sorted(name for name, _ in seccomp.DENIED)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_denied_call_sees_eperm(filtered: Sandbox, name: str) -> None:
    args, _ = CALLS[name]
    assert attempt(filtered, name, args) == (-1, errno.EPERM)


@pytest.mark.parametrize("name", sorted(n for n, (_, e) in CALLS.items() if e is not None))
def test_without_the_filter_the_kernel_answers_otherwise(unfiltered: Sandbox, name: str) -> None:
    args, unfiltered_errno = CALLS[name]
    expected = (0, 0) if unfiltered_errno == 0 else (-1, unfiltered_errno)
    assert attempt(unfiltered, name, args) == expected


@pytest.mark.parametrize("flag", [name for name, _ in seccomp.CLONE_NAMESPACE_FLAGS])
def test_clone_into_a_new_namespace_sees_eperm(filtered: Sandbox, flag: str) -> None:
    bit = dict(seccomp.CLONE_NAMESPACE_FLAGS)[flag]
    assert attempt(filtered, "clone", (bit | SIGCHLD, 0, 0, 0, 0)) == (-1, errno.EPERM)


def test_clone_new_user_without_the_filter_is_refused_otherwise(unfiltered: Sandbox) -> None:
    """bubblewrap's --disable-userns caps the sandbox's user namespaces at the one it is in, so
    the kernel alone answers ENOSPC ("limit reached"), not EPERM."""
    assert attempt(unfiltered, "clone", (0x10000000 | SIGCHLD, 0, 0, 0, 0)) == (-1, errno.ENOSPC)


def test_clone3_sees_enosys(filtered: Sandbox, unfiltered: Sandbox) -> None:
    """clone3 gets ENOSYS so that the C library falls back to clone; without the filter the
    kernel rejects its argument size 0 (below the first struct version's) with EINVAL."""
    assert attempt(filtered, "clone3", (0, 0)) == (-1, errno.ENOSYS)
    assert attempt(unfiltered, "clone3", (0, 0)) == (-1, errno.EINVAL)


ORDINARY = r"""
import json, multiprocessing, os, subprocess, sys, threading

def square(x):
    return x * x

def status_line(text):
    return [line for line in text.splitlines() if line.startswith("Seccomp:")][0].split()[1]

if __name__ == "__main__":
    n = int(sys.stdin.read())
    got = {}
    box = []
    t = threading.Thread(target=lambda: box.append(sum(range(n))))
    t.start()
    t.join()
    got["thread"] = box[0]
    with multiprocessing.Pool(2) as pool:
        got["pool"] = pool.map(square, range(n))
    child = subprocess.run(
        [sys.executable, "-c", "print(open('/proc/self/status').read())"],
        capture_output=True, text=True, check=True,
    )
    got["child_seccomp"] = status_line(child.stdout)
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    got["fork_status"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    got["seccomp"] = status_line(open("/proc/self/status").read())
    print(json.dumps(got))
"""


def test_ordinary_programs_still_work_and_are_filtered(filtered: Sandbox) -> None:
    """Threads, a process pool, a subprocess and fork work under the filter; the test program
    and its child run in seccomp filter mode (2), including with bubblewrap started as
    ``sandbox_uid`` when the tests run as root (the descriptor must reach it)."""
    got = json.loads(run_stdout(filtered, ORDINARY, "5"))
    assert got == {
        "thread": 10,  # 0+1+2+3+4
        "pool": [0, 1, 4, 9, 16],
        "child_seccomp": "2",
        "fork_status": 7,
        "seccomp": "2",
    }


def test_unfiltered_sandbox_has_no_filter(unfiltered: Sandbox) -> None:
    """The control: the same program without the filter reports mode 0, so the check above
    can fail."""
    got = json.loads(run_stdout(unfiltered, ORDINARY, "3"))
    assert (got["seccomp"], got["child_seccomp"]) == ("0", "0")


def test_code_verifier_scores_a_threaded_solution() -> None:
    """End to end through the verifier (the filter on): a solution that uses a thread pool
    and a subprocess is scored correct on two stdin tests."""
    from or1_plugins.verifier.code import CodeVerifier, CodeVerifierConfig

    src = (
        "import subprocess, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "nums = list(map(int, sys.stdin.read().split()))\n"
        "with ThreadPoolExecutor(4) as ex:\n"
        "    total = sum(ex.map(lambda v: v * 2, nums))\n"
        "echo = subprocess.run([sys.executable, '-c', 'print(1)'], capture_output=True, text=True)\n"
        "print(total + int(echo.stdout) - 1)\n"
    )
    gt = {"inputs": ["1 2 3\n", "10\n"], "outputs": ["12\n", "20\n"]}
    with CodeVerifier(CodeVerifierConfig(workers=1)) as v:
        score = v.score(f"```python\n{src}```", {"reward_model": {"ground_truth": gt}})
    assert (score.value, score.status) == (1.0, "correct")


# ------------------------------------------------------------ the compiled program itself

SECCOMP_RET_KILL_PROCESS = 0x8000_0000
SECCOMP_RET_ERRNO = 0x0005_0000
SECCOMP_RET_ALLOW = 0x7FFF_0000


def run_bpf(program: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Classic BPF as the kernel's seccomp runs it, on one ``struct seccomp_data`` (nr, arch,
    instruction pointer, six 64-bit args; machine byte order). Only the instructions a
    seccomp program may use (loads from the data or scratch memory, ALU on constants, jumps,
    returns); anything else fails the test."""
    full = (*args, *([0] * (6 - len(args))))
    data = struct.pack("=iIQ6Q", nr, arch, 0, *[a & (2**64 - 1) for a in full])
    insns = [struct.unpack_from("=HBBI", program, off) for off in range(0, len(program), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if code == 0x20:  # ld [k]
            a = struct.unpack_from("=I", data, k)[0]
        elif code == 0x60:  # ld M[k]
            a = mem[k]
        elif code == 0x61:  # ldx M[k]
            x = mem[k]
        elif code == 0x02:  # st M[k]
            mem[k] = a
        elif code == 0x03:  # stx M[k]
            mem[k] = x
        elif code == 0x07:  # tax
            x = a
        elif code == 0x87:  # txa
            a = x
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x44:  # or #k
            a |= k
        elif code == 0x05:  # ja
            pc += k
        elif cls == 0x05 and code & 0x08 == 0:  # conditional jumps against k
            op = code & 0xF0
            cond = {0x10: a == k, 0x20: a > k, 0x30: a >= k, 0x40: bool(a & k)}[op]
            pc += jt if cond else jf
        elif code == 0x06:  # ret #k
            return k
        elif code == 0x16:  # ret a
            return a
        else:
            raise AssertionError(f"unexpected BPF instruction {code:#x} at {pc - 1}")


@pytest.fixture(scope="module")
def program() -> bytes:
    return seccomp.bpf_program()


def native_arch() -> int:
    import pyseccomp

    return pyseccomp.system_arch()


@pytest.mark.parametrize("name", [n for n, _ in seccomp.DENIED])
def test_compiled_program_denies(program: bytes, name: str) -> None:
    nr = seccomp.syscall_number(name)
    assert run_bpf(program, nr, native_arch()) == SECCOMP_RET_ERRNO | errno.EPERM


@pytest.mark.parametrize(
    "name", ["read", "write", "openat", "mmap", "execve", "wait4", "futex", "exit_group"]
)
def test_compiled_program_allows_ordinary_calls(program: bytes, name: str) -> None:
    assert run_bpf(program, seccomp.syscall_number(name), native_arch()) == SECCOMP_RET_ALLOW


def test_compiled_program_clone_flags(program: bytes) -> None:
    """clone: a thread's flags (CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|
    PARENT_SETTID|CHILD_CLEARTID = 0x3d0f00) and fork's (SIGCHLD) pass; any namespace bit,
    alone or with the others, is denied; clone3 gets ENOSYS."""
    nr, arch = seccomp.syscall_number("clone"), native_arch()
    assert run_bpf(program, nr, arch, (0x3D0F00,)) == SECCOMP_RET_ALLOW
    assert run_bpf(program, nr, arch, (SIGCHLD,)) == SECCOMP_RET_ALLOW
    for _, bit in seccomp.CLONE_NAMESPACE_FLAGS:
        for flags in (bit, bit | SIGCHLD, bit | 0x3D0F00):
            assert run_bpf(program, nr, arch, (flags,)) == SECCOMP_RET_ERRNO | errno.EPERM
    clone3 = seccomp.syscall_number("clone3")
    assert run_bpf(program, clone3, arch) == SECCOMP_RET_ERRNO | errno.ENOSYS


def test_compiled_program_kills_other_abis(program: bytes) -> None:
    """Another architecture's call (the numbers mean other calls there) and, on x86-64, the
    x32 ABI (numbers with bit 30 set) kill the process rather than run unfiltered."""
    arch = native_arch()
    read = seccomp.syscall_number("read")
    other = 0x4000_0003 if arch != 0x4000_0003 else 0xC000_003E  # AUDIT_ARCH_I386 / X86_64
    assert run_bpf(program, read, other) == SECCOMP_RET_KILL_PROCESS
    if arch == 0xC000_003E:  # AUDIT_ARCH_X86_64
        assert run_bpf(program, 0x4000_0000 | read, arch) == SECCOMP_RET_KILL_PROCESS


# ------------------------------------------------------- who bubblewrap runs as on the host


def host_ids(pid: int) -> dict[str, list[str]]:
    """The Uid, Gid and Groups lines of a host process's status."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        lines = [line.split(":", 1) for line in fh if ":" in line]
    return {k: v.split() for k, v in lines if k in ("Uid", "Gid", "Groups")}


@pytest.mark.parametrize("switch", ["setpriv", "popen"])
def test_as_root_bubblewrap_runs_as_the_sandbox_user(switch: str) -> None:
    """When or1 runs as root, the bubblewrap process (our child on the host) runs with real,
    effective, saved and file-system uid and gid ``sandbox_uid`` and no supplementary groups,
    whether setpriv or Popen's child switches them; the filter still reaches the program."""
    if os.geteuid() != 0:
        pytest.skip("only as root (CI): otherwise bubblewrap runs as the calling user")
    sandbox = Sandbox("bwrap", Limits(test_timeout_s=30.0), sandbox_uid=4242)
    if switch == "popen":
        sandbox.setpriv = ""
    else:
        assert sandbox.setpriv, "setpriv (util-linux) is missing"
    seen: list[dict[str, list[str]]] = []

    def on_record(rec: dict) -> bool:
        if rec["i"] == 0:  # test 1 (a sleep) is running: the sandbox is alive
            for name in os.listdir("/proc"):
                if name.isdigit():
                    try:
                        with open(f"/proc/{name}/stat", encoding="utf-8") as fh:
                            fields = fh.read().rsplit(")", 1)[1].split()
                        if int(fields[1]) == os.getpid() and "bwrap" in os.readlink(
                            f"/proc/{name}/exe"
                        ):
                            seen.append(host_ids(int(name)))
                    except OSError:
                        pass
        return True

    program = (
        "import sys, time\n"
        "if sys.stdin.read() == 'sleep':\n"
        "    time.sleep(1.5)\n"
        "print([l for l in open('/proc/self/status') if l.startswith('Seccomp:')][0].split()[1])\n"
    )
    tests = [{"i": 0, "kind": "stdio", "input": ""}, {"i": 1, "kind": "stdio", "input": "sleep"}]
    res = sandbox.run(program, tests, wall_s=60.0, on_record=on_record)
    assert [res.records[i]["out"] for i in (0, 1)] == ["2\n", "2\n"]
    assert seen == [{"Uid": ["4242"] * 4, "Gid": ["4242"] * 4, "Groups": []}]
