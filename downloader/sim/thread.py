"""Serving an aiohttp app from a daemon thread with its own loop, as the raw simulator does."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from aiohttp import web


@dataclass
class AppThread:
    url: str
    _loop: asyncio.AbstractEventLoop
    _runner: web.AppRunner
    _thread: threading.Thread

    def stop(self) -> bool:
        """Stop the server, its thread and its loop; False when it was stopped already."""
        if not self._thread.is_alive():
            return False
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        return True


def start_app_thread(app: web.Application, host: str, port: int, name: str) -> AppThread:
    """Run `app` in a daemon thread on a plain asyncio loop; return once it accepts."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, host, port).start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    started.wait()
    if failure:
        raise failure[0]
    bound_host, bound_port = runner.addresses[0][:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    return AppThread(f"http://{url_host}:{bound_port}", loop, runner, thread)
