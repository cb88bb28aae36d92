"""Huey with SqliteHuey: the peer's app module (benchmarks/peers.py)."""
import os

from huey import SqliteHuey

from common import StartLog

huey = SqliteHuey('bench', filename=os.environ['BENCH_HUEY_DB'])


@huey.task()
def noop(key):
    StartLog.note(key)
