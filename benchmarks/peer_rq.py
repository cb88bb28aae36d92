"""RQ: the peer's task function (peers.py)."""
from common import StartLog


def noop(key):
    StartLog.note(key)
