"""Generation 6: unique jobs and chains (uniqueness.py, dependencies.py).

For every task service: add the index and the counter of the new status
``waiting`` and the (empty) map of unique keys.  Jobs need nothing: their
new attributes (``uniqueKey``, ``after``, ``waitingFor``, ``runAnyway``,
``dependants``) default to none on the class.
"""
from BTrees.Length import Length

from lovely.remotetask import timeset
from lovely.remotetask import uniqueness
from lovely.remotetask.generations.utility import rootServices
from lovely.remotetask.interfaces import WAITING


def evolveService(service):
    """Bring one service to generation 6 (nothing to do if it is)."""
    service._p_activate()
    if WAITING not in service._index:
        # The dicts are never changed in place (see jobtable.py): new ones.
        service._index = dict(service._index,
                              **{WAITING: timeset.newTimeSet()})
    if WAITING not in service._counts:
        service._counts = dict(service._counts, **{WAITING: Length()})
    if '_uniqueKeys' not in vars(service):
        service._uniqueKeys = uniqueness.newKeyMap()


def evolve(context):
    """Evolve every task service in the database."""
    for service in rootServices(context):
        evolveService(service)
