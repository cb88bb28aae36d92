"""Prometheus metrics of the task services (``/metrics``).

A room that calls inward, like ``browser/`` and ``xmlrpc.py``: the core
tells what happens to jobs with the events of ``events.py`` and imports
nothing of this module.  See ``metrics.rst`` and ``docs/operations.rst``.

Two kinds of numbers, from two places:

From the database, read at each scrape (``DatabaseCollector``): exact
whatever process is scraped, the same in every process of a database.

``remotetask_jobs{service,status}``
    Jobs by status (the job table's ``BTrees.Length`` counters).
``remotetask_task_jobs{service,task}``
    Jobs by task, any status (the per-task counters).
``remotetask_oldest_queued_age_seconds{service}``
    How long the first job of the ready queue has been waiting (0 when
    the queue is empty).
``remotetask_workers_alive{service}``
    Registered processors whose heartbeat is alive (workers.py).

Of this process since it started (counters and histograms of
``prometheus_client``, fed by the events): Prometheus adds up the
processes (``sum by (service, task)``) and ``rate()`` copes with a
process that restarts.

``remotetask_jobs_enqueued_total{service,task}``
    Jobs added (committed) by this process.
``remotetask_jobs_completed_total{service,task}``
    Runs that completed.
``remotetask_jobs_failed_total{service,task}``
    Runs that failed for good: no attempt left, a ``TaskError``, or a
    cron job's run (it runs again at its next time).
``remotetask_jobs_retried_total{service,task}``
    Runs that failed and were queued again (attempts left).
``remotetask_job_duration_seconds{service,task}`` (histogram)
    From the claim to the completion.
``remotetask_queue_latency_seconds{service,task}`` (histogram)
    From when a queued job could run (its enqueue, or the end of its
    backoff) to its claim.
``remotetask_lease_recoveries_total{service}``
    Running jobs taken back from a worker whose lease expired or whose
    heartbeat stopped.
``remotetask_conflicts_retried_total{service}``
    Runs (or groups of runs) that conflicted and ran again.

The events of a transaction count when it commits (events.py), so a
conflicting run that runs again completes once, and counts once.
"""
import logging

import prometheus_client
import transaction
import zope.component
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import InfoMetricFamily

from lovely.remotetask import events
from lovely.remotetask.interfaces import STATUSES


log = logging.getLogger('lovely.remotetask')

#: The media type of the text exposition format.
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

#: Seconds: from a millisecond job to a long batch.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                    10, 30, 60, 300, 1800, float('inf'))
LATENCY_BUCKETS = DURATION_BUCKETS

JOB = ('service', 'task')

# Not registered in prometheus_client's global registry: ``exposition``
# puts them with the database's numbers into a registry of its own.
ENQUEUED = Counter('remotetask_jobs_enqueued', 'Jobs added by this process',
                   JOB, registry=None)
COMPLETED = Counter('remotetask_jobs_completed',
                    'Job runs completed by this process', JOB,
                    registry=None)
FAILED = Counter('remotetask_jobs_failed',
                 'Job runs of this process that failed for good', JOB,
                 registry=None)
RETRIED = Counter('remotetask_jobs_retried',
                  'Job runs of this process that failed and were queued '
                  'again', JOB, registry=None)
DURATION = Histogram('remotetask_job_duration_seconds',
                     'Seconds from claim to completion', JOB,
                     buckets=DURATION_BUCKETS, registry=None)
LATENCY = Histogram('remotetask_queue_latency_seconds',
                    'Seconds a queued job waited for its claim', JOB,
                    buckets=LATENCY_BUCKETS, registry=None)
RECOVERED = Counter('remotetask_lease_recoveries',
                    'Running jobs taken back from a lost worker',
                    ('service',), registry=None)
CONFLICTS = Counter('remotetask_conflicts_retried',
                    'Runs that conflicted and ran again', ('service',),
                    registry=None)

PROCESS_METRICS = (ENQUEUED, COMPLETED, FAILED, RETRIED, DURATION, LATENCY,
                   RECOVERED, CONFLICTS)


# -- the events ------------------------------------------------------------

@zope.component.adapter(events.IJobEvent)
def observeJob(event):
    """Count a job event (a subscriber, see configure.zcml)."""
    labels = (event.service, event.task)
    if events.IJobEnqueued.providedBy(event):
        ENQUEUED.labels(*labels).inc()
    elif events.IJobStarted.providedBy(event):
        if event.waited is not None:
            LATENCY.labels(*labels).observe(event.waited)
    elif events.IJobCompleted.providedBy(event):
        COMPLETED.labels(*labels).inc()
        DURATION.labels(*labels).observe(event.duration)
    elif events.IJobFailed.providedBy(event):
        (RETRIED if event.outcome == 'retry' else FAILED).labels(
            *labels).inc()
    elif events.ILeaseRecovered.providedBy(event):
        RECOVERED.labels(event.service).inc()


@zope.component.adapter(events.IConflictRetried)
def observeConflict(event):
    """Count a conflict that runs a job again."""
    CONFLICTS.labels(event.service).inc()


# -- the database ----------------------------------------------------------

class DatabaseCollector:
    """The numbers of the database (module doc), read at each scrape.

    One short read-only connection: the counters and the first key of
    the ready queue, no job list is walked.  Cost: a few objects per
    service and task.
    """

    def __init__(self, db, spec='*@*'):
        self.db = db
        self.spec = spec

    def collect(self):
        from lovely.remotetask.jobtable import now_
        from lovely.remotetask.startup import findServices
        from zope.app.publication.zopepublication import ZopePublication
        jobs = GaugeMetricFamily(
            'remotetask_jobs', 'Jobs by status (from the database)',
            labels=['service', 'status'])
        tasks = GaugeMetricFamily(
            'remotetask_task_jobs', 'Jobs by task, any status (from the '
            'database)', labels=['service', 'task'])
        oldest = GaugeMetricFamily(
            'remotetask_oldest_queued_age_seconds',
            'Seconds the first job of the ready queue has waited',
            labels=['service'])
        alive = GaugeMetricFamily(
            'remotetask_workers_alive', 'Processors with a live heartbeat',
            labels=['service'])
        tm = transaction.TransactionManager()
        conn = self.db.open(transaction_manager=tm)
        try:
            tm.begin()
            root = conn.root().get(ZopePublication.root_name)
            found = [] if root is None else findServices(
                root, self.spec, 'metrics', logging.DEBUG)
            now = now_()
            for name, service in found:
                for status in STATUSES:
                    jobs.add_metric([name, status], service.countJobs(status))
                # The per-task counters of the job table (jobtable.py).
                for task in service.taskNames():
                    tasks.add_metric([name, task],
                                     service.countJobs(task=task))
                first = service._firstQueued()
                age = 0.0 if first is None else max(
                    (now - first).total_seconds(), 0.0)
                oldest.add_metric([name], age)
                alive.add_metric([name], len(service.activeWorkers(now)))
        finally:
            tm.abort()
            conn.close()
        return [jobs, tasks, oldest, alive]


def version():
    from lovely.remotetask.workers import version
    return version()


class InfoCollector:
    """``remotetask_info{version}``."""

    def collect(self):
        info = InfoMetricFamily('remotetask', 'lovely.remotetask')
        info.add_metric([], {'version': version()})
        return [info]


def registry(db=None):
    """A registry with this process's metrics and, given ``db``, the
    database's."""
    result = CollectorRegistry(auto_describe=False)
    for metric in PROCESS_METRICS:
        result.register(metric)
    result.register(InfoCollector())
    result.register(prometheus_client.ProcessCollector(registry=None))
    if db is not None:
        result.register(DatabaseCollector(db))
    return result


def exposition(db=None):
    """The text exposition of ``registry(db)`` (bytes)."""
    return prometheus_client.generate_latest(registry(db))


def reset():
    """Forget this process's numbers (for tests)."""
    for metric in PROCESS_METRICS:
        metric.clear()


# -- the page ----------------------------------------------------------------

class MetricsPage:
    """``/metrics`` of ``remotetask serve``: behind the permission
    ``lovely.remotetask.Monitor`` (see metrics.zcml)."""

    def __init__(self, context, request):
        self.context = context
        self.request = request

    def __call__(self):
        body = exposition(database(self.context))
        self.request.response.setHeader('Content-Type', CONTENT_TYPE)
        return body


def database(context):
    """The database of a (security proxied) persistent object."""
    from zope.security.proxy import removeSecurityProxy
    return removeSecurityProxy(context)._p_jar.db()
