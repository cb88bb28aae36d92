"""Generation 2: cron jobs run at the times lovely.remotetask 0.5.2 meant.

Before, a schedule ran every minute that matched its given fields
(``hour=(3,)`` ran 60 times a night).  Now the finest field given sets
the step and the finer empty fields mean their lowest value (cron.py), so
``hour=(3,)`` runs at 03:00.  This step moves each waiting cron job's due
time to its first run under the new rule at or after the stored one.  The
new rule runs at a subset of the old times, so that is the first new time
after the job's last run: no run is skipped or repeated.

The schedule index of the service (its ``_schedule`` time set) has the
due time in its key: the service's own ``_scheduleAt`` keeps the two
in step.
"""
import datetime

from lovely.remotetask.generations.utility import rootServices
from lovely.remotetask.interfaces import CRONJOB


def fixCronJobs(service):
    """Move the service's waiting cron jobs to their due time under the
    new rule; return how many moved."""
    moved = 0
    for job in list(service.listJobs(status=CRONJOB)):
        if job.due is None:
            continue
        due = job.nextRun(job.due - datetime.timedelta(minutes=1))
        if due is not None and due != job.due:
            service._scheduleAt(job, CRONJOB, due)
            moved += 1
    return moved


def evolve(context):
    """Fix the due times of the cron jobs of every task service."""
    for service in rootServices(context):
        fixCronJobs(service)
