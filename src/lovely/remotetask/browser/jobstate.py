"""What the Jobs tab tells of a job beyond its status: how far a running
job got (``progressOf``) and where it stands in the queue, its job
control (``queueOf``: priority, unique key, the jobs it waits for, the
limits of its task that hold it back).

Both look at the row's job and, for one status each, at one record
more through the service: a running job's progress report
(``getProgress``, its own record), and a queued job's task gate
(``heldBack``).  So a page of the table costs one lookup per row at
most, whatever the size of the service: no scan, no count.
"""
from zope.i18n import translate
from zope.i18nmessageid import MessageFactory

from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.interfaces import PROCESSING
from lovely.remotetask.interfaces import QUEUED
from lovely.remotetask.interfaces import WAITING
from lovely.remotetask.priorities import DEFAULT


_ = MessageFactory('lovely.remotetask')

#: How ``heldBack`` begins its text (the cell says "held back: ...").
HELD_BACK = 'Held back by the limits of its task: '
#: The most job ids a title lists.
IDS = 20
#: The most characters of a unique key in a cell (its title has all).
KEY = 40


def progressOf(service, job):
    """A running job's last progress report as text, or None (another
    status, or no report): ``{'percent', 'message', 'updated'}``,
    ``percent`` and ``message`` None where the task gave none."""
    if job.status != PROCESSING:
        return None
    report = service.getProgress(job.id)
    if report is None:
        return None
    fraction = report['fraction']
    return {'percent': None if fraction is None
            else f'{fraction * 100:.0f} %',
            'message': report['message'],
            'updated': formatDate(report['updated'])}


def heldBackWhy(text):
    """The reason of a ``heldBack`` text, without its beginning.

    >>> heldBackWhy('Held back by the limits of its task: 2 of at most 2 '
    ...             'jobs of the task are running.')
    '2 of at most 2 jobs of the task are running'
    >>> heldBackWhy('Waits.')
    'Waits'
    """
    if text.startswith(HELD_BACK):
        text = text[len(HELD_BACK):]
    return text.rstrip('.')


def _ids(ids):
    shown = ', '.join(str(jobid) for jobid in ids[:IDS])
    return shown + (', \u2026' if len(ids) > IDS else '')


def queueOf(service, job, request=None):
    """The job control of a job, as ``(kind, text, title)`` items (title
    None or the whole of what the text shortens): ``priority`` unless it
    is the default, ``key`` (its unique key), ``waiting`` (the jobs of a
    waiting job's chain that have not ended), ``held`` (why the limits
    of its task hold a queued job back)."""
    def text(message, **mapping):
        return translate(_(message, mapping=mapping), context=request)
    items = []
    if job.priority != DEFAULT:
        items.append(('priority',
                      text('priority ${priority}', priority=job.priority),
                      None))
    key = job.uniqueKey
    if key is not None:
        short = key if len(key) <= KEY else key[:KEY - 1] + '\u2026'
        items.append(('key', text('key ${key}', key=short), key))
    if job.status == WAITING:
        waiting = tuple(job.waitingFor)
        items.append(('waiting', text(
            'waits for ${count} job' if len(waiting) == 1
            else 'waits for ${count} jobs', count=len(waiting)),
            text('jobs ${ids}', ids=_ids(waiting))))
    elif job.status == QUEUED:
        why = service.heldBack(job.id)
        if why:
            items.append(('held', text('held back: ${why}',
                                       why=heldBackWhy(why)), why))
    return items
