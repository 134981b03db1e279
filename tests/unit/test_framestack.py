"""system/framestack.py: a loop that crosses a CPython 3.11 frame-stack chunk boundary maps a
fresh 16 KiB chunk (and faults its pages in) on every pass; run padded, it does not."""
import resource
import threading

from system import framestack, procmains


def _recurse(n):
    return _recurse(n - 1) if n else 0


def _worst_faults_per_depth(padded: bool) -> tuple[int, int]:
    """(page faults, depth) of the worst call depth: 100 calls at each depth, in a new thread
    (a fresh data stack, so the first chunk boundary is at a fixed depth)."""
    out = {}

    def body():
        worst = (0, 0)
        for depth in range(1, 900, 3):
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            for _ in range(100):
                _recurse(depth)
            faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
            worst = max(worst, (faults, depth))
        out["worst"] = worst
    t = threading.Thread(target=framestack.padded(body) if padded else body)
    t.start()
    t.join(60)
    return out["worst"]


def test_a_loop_across_a_chunk_boundary_faults_every_pass_unless_padded():
    faults, depth = _worst_faults_per_depth(padded=False)
    assert faults >= 100, (faults, depth)      # at least one fault per call at the boundary
    faults, depth = _worst_faults_per_depth(padded=True)
    assert faults < 20, (faults, depth)


def test_padded_calls_pass_arguments_and_results_through():
    assert framestack.padded(lambda a, b=0: a + b)(2, b=3) == 5

    @framestack.padded
    def f(x):
        """doc"""
        return x * 2
    assert f(21) == 42 and f.__doc__ == "doc" and f.__name__ == "f"


def test_thespian_process_entry_points_are_padded():
    from thespian.system import multiprocCommon as mpc
    framestack.pad_thespian_processes()
    assert all(getattr(getattr(mpc, n), framestack.MARKER, False)
               for n in procmains.PROCESS_MAINS if hasattr(mpc, n))
