"""A job's own page (SERVICE/JOBID) and the detail cell of cron jobs."""
import html
import pprint
import reprlib

from zope.browserpage import ViewPageTemplateFile
from zope.i18n import translate
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.schedule import formatSchedule
from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.browser.util import statusClass
from lovely.remotetask.interaction import lookup
from lovely.remotetask.limits import pickledSize
from lovely.remotetask.interfaces import ICronJob


_ = MessageFactory('lovely.remotetask')


#: What the page shows for data nested too deeply to print.
TOO_DEEP = '[nested too deeply to show]'
#: The most characters the page shows of a value (input, output, error,
#: traceback); a longer one is cut, and the page says how long it is.
SHOWN = 10000
#: Data larger than this (bytes, pickled) is not pretty-printed (which
#: would build its whole text) but abbreviated (``reprlib``).
PRETTY = 256 * 1024


def _abbreviated():
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxdict = short.maxlist = short.maxtuple = 50
    short.maxset = short.maxfrozenset = short.maxdeque = 50
    short.maxstring = short.maxother = short.maxlong = 500
    return short


def formatData(value):
    """Job input or output as text: pretty-printed Python data.

    >>> print(formatData({'a': [1, 2]}))
    {'a': [1, 2]}
    >>> deep = []
    >>> for i in range(100000):
    ...     deep = [deep]
    >>> formatData(deep)
    '[nested too deeply to show]'
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return pprint.pformat(value, width=78)
    except RecursionError:
        return TOO_DEEP


def showData(value):
    """A value as the page shows it: ``{'text', 'note'}``.

    The text is None for None, and at most ``SHOWN`` characters; the note
    (None for a value shown whole) says how large the value is.

    >>> showData([1, 2])
    {'text': '[1, 2]', 'note': None}
    >>> shown = showData('x' * 50000)
    >>> len(shown['text']), shown['note']
    (10000, '50,000 characters; the first 10,000 are shown.')
    >>> shown = showData(list(range(100000)))
    >>> shown['text'][-12:], shown['note']
    ('48, 49, ...]', '368,878 bytes (pickled); an abbreviation is shown.')
    >>> import threading
    >>> showData([threading.Lock()])['text'].startswith('[<unlocked')
    True
    """
    if value is None or isinstance(value, str):
        text = value
    else:
        try:
            size = pickledSize(value)
        except ValueError:
            # Stored once, it cannot be pickled now (a class that went
            # away, say): show what can be shown.
            size = 0
        if size > PRETTY:
            return {'text': _abbreviated().repr(value)[:SHOWN],
                    'note': f'{size:,} bytes (pickled); an abbreviation is '
                            f'shown.'}
        text = formatData(value)
    if text is None or len(text) <= SHOWN:
        return {'text': text, 'note': None}
    return {'text': text[:SHOWN],
            'note': f'{len(text):,} characters; the first {SHOWN:,} are '
                    f'shown.'}


class JobView(BrowserPage):
    """Everything about one job: data, dates, attempts, worker, error.

    The template inserts every value as text: job data is user data and
    comes back escaped.
    """

    template = ViewPageTemplateFile('job.pt')

    def __call__(self):
        return self.template()

    def statusClass(self):
        """The CSS class of the job's status."""
        return statusClass(self.context.status)

    def serviceURL(self):
        """The URL of the job's service (its Jobs tab)."""
        return absoluteURL(self.context.__parent__, self.request)

    def data(self):
        """The job's input, output, error and traceback as ``showData``
        shows them, by name."""
        # Only read and measured here: the proxies would hide the types
        # that pickling needs.
        job = removeSecurityProxy(self.context)
        return {name: showData(getattr(job, name))
                for name in ('input', 'output', 'error', 'traceback')}

    def input(self):
        """The job's input as text, or None."""
        return showData(removeSecurityProxy(self.context.input))['text']

    def output(self):
        """The job's output as text, or None."""
        return showData(removeSecurityProxy(self.context.output))['text']

    def dates(self):
        """The job's dates as ``{'label', 'value'}``, the value as text."""
        job = self.context
        dates = [(_('Created'), job.created), (_('Started'), job.started),
                 (_('Completed'), job.completed)]
        if job.leaseExpires is not None:
            dates.append((_('Lease expires'), job.leaseExpires))
        if ICronJob.providedBy(job):
            dates.append((_('Scheduled for'), job.scheduledFor))
        return [{'label': label, 'value': formatDate(value)}
                for label, value in dates]

    def addedBy(self):
        """Who added the job: the principal's title and id, or just the
        id when the site no longer knows it; None if nobody is recorded
        (the job runs as the unauthenticated principal)."""
        principalId = self.context.addedBy
        if principalId is None:
            return None
        principal = lookup(self.context.__parent__, principalId)
        title = getattr(principal, 'title', None)
        if not title or title == principalId:
            return principalId
        return f'{title} ({principalId})'

    def attempts(self):
        """``attempts`` of the most allowed, when the job has its own
        limit; else just the count."""
        job = self.context
        if job.maxRetries is None:
            return str(job.attempts)
        return f'{job.attempts} / {job.maxRetries + 1}'

    def heldBack(self):
        """Why the queued job waits for its task's limits, or None."""
        return self.context.__parent__.heldBack(self.context.id)

    def schedule(self):
        """A cron job's schedule in one line; None for other jobs."""
        if ICronJob.providedBy(self.context):
            return formatSchedule(self.context)
        return None


class JobDetail(BrowserPage):
    """The ``detail`` view of a job (0.5.2's): nothing to say about its
    input.  Applications register ``TASKNAME_detail`` views, or a
    ``detail`` view of their own, to say more."""

    def __call__(self):
        return html.escape(translate(_('No input detail available'),
                                     context=self.request))


class CronJobDetail(BrowserPage):
    """The Detail cell of a cron job: its schedule and next run."""

    def __call__(self):
        job = self.context
        if job.scheduledFor is None:
            when = translate(_('not scheduled'), context=self.request)
        else:
            when = translate(_('next run ${date}',
                               mapping={'date': formatDate(job.scheduledFor)}),
                             context=self.request)
        return (f'<span class="schedule">{html.escape(formatSchedule(job))}'
                f'</span> ({html.escape(when)})')
