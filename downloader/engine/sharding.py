"""Sharding in the engine: a plan keeps only the jobs this instance owns.

Sources do not know about sharding; they plan every configured item, and the engine drops the
jobs whose ownership unit (:class:`~downloader.engine.source.Owned`, by default the key's item)
hashes to another instance (:func:`~downloader.core.sharding.shard_of`). What is dropped is
never asked for, downloaded, written or recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from downloader.core.model import PartitionKey
from downloader.core.sharding import Shard
from downloader.engine.source import Job, Owned, Plan, Source


def owner_of(source: Source, key: PartitionKey) -> str:
    """The ownership unit of ``key``: the source's :meth:`Owned.owner`, else its item."""
    return source.owner(key) if isinstance(source, Owned) else key.item


def ownership(source: Source, shard: Shard) -> Callable[[PartitionKey], bool]:
    """``key -> owned by this instance``, memoised per unit (a plan has a few hundred units
    and hundreds of thousands of keys)."""
    seen: dict[str, bool] = {}
    hook = source.owner if isinstance(source, Owned) else None

    def owns(key: PartitionKey) -> bool:
        unit = hook(key) if hook is not None else key.item
        mine = seen.get(unit)
        if mine is None:
            mine = seen[unit] = shard.owns(source.name, unit)
        return mine

    return owns


def owned_jobs(source: Source, shard: Shard, jobs: Iterable[Job]) -> list[Job]:
    """The jobs whose (first) key this instance owns: a job's keys share one unit."""
    if not shard.sharded:
        return list(jobs)
    owns = ownership(source, shard)
    return [job for job in jobs if job.keys and owns(job.keys[0])]


def owned_plan(source: Source, shard: Shard, plan: Plan) -> Plan:
    """``plan`` with only this instance's jobs. ``failed`` stays whole: it names what could
    not even be planned (a list call that failed), whose items, unknown, may be anyone's."""
    if shard.sharded:
        plan.jobs = owned_jobs(source, shard, plan.jobs)
    return plan
