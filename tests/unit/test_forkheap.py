"""system/forkheap.py: a process forked through thespian's entry points starts with everything
it inherited out of the garbage collector's reach (so a collection in the child does not copy
the parent's pages), and what it allocates itself is still collected."""
import gc
import json
import os

from system import forkheap, procmains


def _in_fork(fn) -> dict:
    """Run FN in a forked child; return the dict it returns (through a pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # the child: never returns to pytest
        code = 1
        try:
            os.close(r)
            os.write(w, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    return json.loads(data)


def _survey(marker_id: int) -> dict:
    tracked = {id(o) for o in gc.get_objects()}     # every generation except the permanent one
    fresh = [[]]                                    # allocated in the child after the start
    return {"marker_tracked": marker_id in tracked, "fresh_tracked": id(fresh) in
            {id(o) for o in gc.get_objects()}, "frozen": gc.get_freeze_count()}


def test_a_forked_process_freezes_what_it_inherited():
    marker = [["inherited"]]                        # a tracked container made by the parent
    assert gc.is_tracked(marker)
    plain = _in_fork(lambda: _survey(id(marker)))
    frozen = _in_fork(forkheap.frozen_start(lambda: _survey(id(marker))))
    assert plain["marker_tracked"] is True          # without it, the child's GC walks it
    assert frozen["marker_tracked"] is False        # with it, the inherited object is frozen
    assert frozen["frozen"] > plain["frozen"]
    assert frozen["fresh_tracked"] is True          # the child's own objects are collected


def test_frozen_start_passes_arguments_and_results_through():
    wrapped = forkheap.frozen_start(lambda a, b=0: a + b)
    assert _in_fork(lambda: {"v": wrapped(2, b=3)}) == {"v": 5}


def test_thespian_process_entry_points_freeze_first():
    from thespian.system import multiprocCommon as mpc
    forkheap.install()
    assert all(getattr(getattr(mpc, n), forkheap.MARKER, False)
               for n in procmains.PROCESS_MAINS if hasattr(mpc, n))
