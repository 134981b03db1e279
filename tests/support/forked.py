"""Run a function in a forked child of the test process, for checks that change process-wide
state (such as marking the process mergeable) without touching the test process itself."""
import os


def run_in_fork(fn) -> int:
    """FN() in a forked child; its exit status: 0 when FN returned, 1 when it raised."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException as exc:   # report, then leave without running pytest's exit
            os.write(2, f"child: {exc!r}\n".encode())
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
