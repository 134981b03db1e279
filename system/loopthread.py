"""An asyncio event loop in a daemon thread, owned by one actor.

The backends (Telethon, Pyrogram), the store (aiosqlite) and the admin and metrics listeners are
asyncio code, while thespian calls an actor synchronously. The actor keeps its loop here and
submits coroutines; completions come back through the actor's `Bridge`, never by blocking.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

log = logging.getLogger("tgfleet.loopthread")


class LoopThread:
    def __init__(self, name: str):
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"loop-{name}", daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(5)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(
                        asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            except Exception:
                log.exception("loop %s: error while cancelling tasks at stop", self.name)
            self.loop.close()

    def submit(self, coro) -> concurrent.futures.Future:
        """Schedule `coro` on the loop from any thread; returns a concurrent Future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def submit_to(self, coro, bridge, tag) -> concurrent.futures.Future:
        """Run `coro` and post `(tag, future)` to `bridge` when it completes."""
        fut = self.submit(coro)
        fut.add_done_callback(lambda f: bridge.post((tag, f)))
        return fut

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call_soon(self, fn, *args):
        """Run fn(*args) on the loop soon, from any thread. From the loop's own thread (library
        handlers pushing updates) it is a plain call_soon: the thread-safe variant would also
        write a wake-up byte to the loop's self-pipe for every update."""
        if threading.current_thread() is self._thread:
            self.loop.call_soon(fn, *args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the loop (pending tasks are cancelled) and join the thread."""
        if self._thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass  # loop already closed
            if self.on_loop_thread():
                # Never from the loop itself (system/inline.py defers clean-ups to the
                # runner); joining here would raise. The loop stops when this callback ends.
                log.warning("loop %s: stop() called from its own thread", self.name)
                return False
            self._thread.join(timeout)
        return not self._thread.is_alive()
