"""system/procmains.py: thespian's process mains are wrapped once however often the patch is
applied, the wrappers of different patches stack, and the original still runs underneath."""
import functools

from thespian.system import multiprocCommon as mpc

from system import procmains


def test_each_patch_wraps_every_process_main_once_and_patches_stack():
    saved = {n: getattr(mpc, n) for n in procmains.PROCESS_MAINS if hasattr(mpc, n)}
    calls = []

    def tracing(tag):
        def decorate(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                calls.append(tag)
                return fn(*args, **kwargs)
            return wrapper
        return decorate
    try:
        for name in saved:       # a stand-in main, so calling it starts no process
            setattr(mpc, name, lambda *a, **k: "ran")
        procmains.wrap_process_mains(tracing("a"), "_test_a")
        first = {n: getattr(mpc, n) for n in saved}
        procmains.wrap_process_mains(tracing("a"), "_test_a")
        assert {n: getattr(mpc, n) for n in saved} == first      # not wrapped twice
        procmains.wrap_process_mains(tracing("b"), "_test_b")
        assert mpc.startChild() == "ran" and calls == ["b", "a"]   # both run, then the main
    finally:
        for name, fn in saved.items():
            setattr(mpc, name, fn)
