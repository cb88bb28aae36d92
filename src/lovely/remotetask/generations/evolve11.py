"""Generation 11: time sets store their keys packed (timeset.py).

For every task service: rebuild each time set, so that its buckets are
``TimeBucket`` objects (a set's new buckets are made by splitting its
old ones, which would keep the old kind for ever).  A set is rebuilt in
place (the same tree object, new buckets); its keys are read into a list
first, 8 bytes each (a set of a million keys: tens of MB for a moment).

The generation is also raised so that an older release, which cannot
read a packed bucket, refuses the database (``GenerationTooHigh``).
"""
from lovely.remotetask import timeset
from lovely.remotetask.generations.utility import rootServices


def evolveService(service):
    """Rebuild the time sets of one service (nothing to do if they are
    built already)."""
    for keys in service._timeSets():
        timeset.rebuild(keys)


def evolve(context):
    """Evolve every task service in the database."""
    for service in rootServices(context):
        evolveService(service)
