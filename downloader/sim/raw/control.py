"""The simulator's control endpoints (`/_sim/...`), for tests and for other processes.

- `GET /_sim/stats`: every API call and download seen so far (see `stats`).
- `POST /_sim/faults`: set fault knobs, e.g. `{"drop": 2}`; answers all knobs.
- `POST /_sim/clock`: `{"now": "2024-06-10T12:00:00+08:00"}` freezes the export clock,
  `{"now": null}` goes back to the configured one.
- `GET /_sim/parts/{ai}/{export_type}/{data_type}/{export_date}`: the current parts.
- `POST /_sim/reexport`: `{"ai", "export_type", "data_type", "label", "parts"?}` makes the
  partition's content a new version; answers its parts.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from downloader.sim.raw.api import json_response
from downloader.sim.raw.faults import check_changes
from downloader.sim.raw.partstore import ExpectedPart

if TYPE_CHECKING:
    from downloader.sim.raw.app import Simulator


def add_control_routes(app: web.Application, sim: Simulator) -> None:
    async def stats(request: web.Request) -> web.Response:
        return json_response(sim.stats.to_json())

    async def faults(request: web.Request) -> web.Response:
        changes = await _json_body(request)
        problem = check_changes(changes)
        if problem is not None:
            return json_response({"error": problem}, 400)
        with sim._lock:
            for name, value in changes.items():
                setattr(sim.config.faults, name, value)
            return json_response(asdict(sim.config.faults))

    async def clock(request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            raw = body["now"]
            sim.set_now(None if raw is None else datetime.fromisoformat(raw))
        except (KeyError, TypeError, ValueError) as exc:
            expected = "{'now': iso8601-with-offset | null}"
            return json_response({"error": f"expected {expected}: {exc}"}, 400)
        return json_response({"now": sim.now().isoformat()})

    async def parts(request: web.Request) -> web.Response:
        m = request.match_info
        try:
            found = await asyncio.to_thread(
                sim.expected_parts, m["ai"], m["export_type"], m["data_type"], m["export_date"]
            )
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(_listing(found))

    async def reexport(request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            args = [body[k] for k in ("ai", "export_type", "data_type", "label")]
            if not all(isinstance(a, str) for a in args):
                raise TypeError("ai, export_type, data_type and label must be strings")
            ai, export_type, data_type, label = args
            found = await asyncio.to_thread(
                sim.reexport, ai, export_type, data_type, label, body.get("parts")
            )
        except (KeyError, TypeError, ValueError) as exc:
            keys = "ai, export_type, data_type, label and optionally parts"
            return json_response({"error": f"expected an object with {keys}: {exc!r}"}, 400)
        return json_response(_listing(found))

    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/faults", faults)
    app.router.add_post("/_sim/clock", clock)
    app.router.add_get("/_sim/parts/{ai}/{export_type}/{data_type}/{export_date}", parts)
    app.router.add_post("/_sim/reexport", reexport)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _listing(parts: list[ExpectedPart]) -> list[dict[str, Any]]:
    return [{"index": p.index, "size": p.size, "sha256": p.sha256} for p in parts]
