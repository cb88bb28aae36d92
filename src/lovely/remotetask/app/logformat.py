"""Log formats: timestamps with milliseconds, and JSON lines.

zope.conf's ``<logfile>`` takes a ``formatter`` (a dotted name) besides
its ``format``.  The generated zope.conf logs lines such as::

    2026-05-04T10:11:12.345 INFO [lovely.remotetask] Started processing ...

with ``format %(asctime)s.%(msecs)03d %(levelname)s [%(name)s] %(message)s``
(``asctime`` of ZConfig's default ``dateformat`` has whole seconds).
For a log collector, one JSON object per line::

    <logfile>
      path STDOUT
      formatter lovely.remotetask.app.logformat.JSONFormatter
    </logfile>

Each object has ``time`` (ISO 8601 in UTC, milliseconds), ``level``,
``logger``, ``message`` and, where known, ``job`` (the id), ``task`` and
``worker``: from the record (``extra={'job': ..., 'task': ...,
'worker': ...}``), else from the job the logging thread runs (its
interaction, see ``lovely.remotetask.interaction``) and the processor it
belongs to (``lovely.remotetask.processor.workerOfThread``).  A
traceback is in ``exception``.  The format given is ignored.
"""
import datetime
import json
import logging
import threading


FIELDS = ('job', 'task', 'worker')


def isotime(created):
    """``record.created`` as ISO 8601 UTC with milliseconds.

    >>> isotime(1700000000.1234)
    '2023-11-14T22:13:20.123Z'
    """
    when = datetime.datetime.fromtimestamp(created, datetime.timezone.utc)
    return when.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (
        when.microsecond // 1000)


def context():
    """``{job, task, worker}`` of the job the current thread runs."""
    found = {}
    try:
        from zope.security.management import queryInteraction
        interaction = queryInteraction()
    except ImportError:  # pragma: no cover
        interaction = None
    for participation in getattr(interaction, 'participations', ()):
        jobid = getattr(participation, 'jobid', None)
        if jobid is not None:
            found['job'] = jobid
            task = getattr(participation, 'task', None)
            if task is not None:
                found['task'] = task
            break
    from lovely.remotetask import processor
    worker = processor.workerOfThread(threading.current_thread().name)
    if worker is not None:
        found['worker'] = worker
    return found


class JSONFormatter(logging.Formatter):
    """One JSON object per record (see the module)."""

    def __init__(self, fmt=None, datefmt=None, style='%', *args, **kw):
        super().__init__(None, datefmt)

    def format(self, record):
        data = {
            'time': isotime(record.created),
            'level': record.levelname,
            'logger': record.name,
            'message': record.getMessage(),
        }
        found = context()
        for field in FIELDS:
            value = getattr(record, field, None)
            if value is None:
                value = found.get(field)
            if value is not None:
                data[field] = value
        if record.exc_info:
            data['exception'] = self.formatException(record.exc_info)
        elif record.exc_text:
            data['exception'] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)
