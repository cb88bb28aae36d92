"""Generation 2: cron jobs run at the times lovely.remotetask 0.5.2 meant.

Before, a schedule ran every minute that matched its given fields
(``hour=(3,)`` ran 60 times a night).  Now the finest field given sets
the step and the finer empty fields mean their lowest value (cron.py), so
``hour=(3,)`` runs at 03:00.  This step moves each waiting cron job's due
time to its first run under the new rule at or after the stored one.  The
new rule runs at a subset of the old times, so that is the first new time
after the job's last run: no run is skipped or repeated.

The schedule index of the service (its ``_schedule`` time set) has the
due time in its key: the service's own ``_unschedule`` and
``_scheduleAt`` keep the two in step.
"""
import datetime

from zope.app.publication.zopepublication import ZopePublication
from zope.component.interfaces import ISite

from lovely.remotetask.interfaces import CRONJOB
from lovely.remotetask.interfaces import ITaskService


def taskServices(obj, seen=None):
    """Every task service in or below ``obj``: in containers and in the
    site managers of sites (where registered utilities live)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if ITaskService.providedBy(obj):
        yield obj
        return
    if ISite.providedBy(obj):
        yield from taskServices(obj.getSiteManager(), seen)
    values = getattr(obj, 'values', None)
    if callable(values):
        for child in list(values()):
            yield from taskServices(child, seen)


def fixCronJobs(service):
    """Move the service's waiting cron jobs to their due time under the
    new rule; return how many moved."""
    moved = 0
    for job in list(service.listJobs(status=CRONJOB)):
        if job.due is None:
            continue
        due = job.nextRun(job.due - datetime.timedelta(minutes=1))
        if due is not None and due != job.due:
            service._unschedule(job)
            service._scheduleAt(job, due)
            moved += 1
    return moved


def evolve(context):
    """Fix the due times of the cron jobs of every task service."""
    root = context.connection.root().get(ZopePublication.root_name)
    if root is None:
        return
    for service in taskServices(root):
        fixCronJobs(service)
