"""Generation 7: the links of chains move off the parents (dependencies.py).

For every task service: add ``_followers`` and link every waiting job to
the parents it still waits for; put the sentinel into the map of unique
keys (uniqueness.py).  A parent stored before kept its
dependants in its own record (``dependants``); that stays readable (the
``dependants`` property falls back to it), so no job is rewritten but
the waiting ones' parents' links.
"""
from lovely.remotetask import dependencies
from lovely.remotetask import uniqueness
from lovely.remotetask.generations.utility import rootServices
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.timeset import keyId
from lovely.remotetask.timeset import timeKeys


def evolveService(service):
    """Bring one service to generation 7 (nothing to do if it is)."""
    service._p_activate()
    if uniqueness.SENTINEL not in service._uniqueKeys:
        service._uniqueKeys[uniqueness.SENTINEL] = 0
    if '_followers' in vars(service):
        return
    service._followers = dependencies.newFollowers()
    for key in timeKeys(service._index[WAITING]):
        child = service.jobs[keyId(key)]
        for parentid in child.waitingFor:
            service._followers.add(dependencies._link(parentid, child.id))


def evolve(context):
    """Evolve every task service in the database."""
    for service in rootServices(context):
        evolveService(service)
