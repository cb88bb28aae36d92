"""A job's own page (SERVICE/JOBID) and the detail cell of cron jobs.

The page's buttons (Retry, Cancel) change the job, so, as the Jobs tab's, they
act on POST requests only, refuse a POST from another site (403, see
util.py), need ``lovely.remotetask.Manage`` and redirect (303 See Other)
to the page, with a fixed message named in the query (``done``).
"""
import html
import pprint
import reprlib
from urllib.parse import urlencode

from zope.browserpage import ViewPageTemplateFile
from zope.i18n import translate
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.security import checkPermission
from zope.security.interfaces import Unauthorized
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.schedule import formatSchedule
from lovely.remotetask.browser.util import element
from lovely.remotetask.browser.util import encodable
from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.browser.util import refuseCrossOrigin
from lovely.remotetask.browser.util import renderNodes
from lovely.remotetask.browser.util import statusClass
from lovely.remotetask.history import RETRYABLE
from lovely.remotetask.interaction import lookup
from lovely.remotetask.limits import pickledSize
from lovely.remotetask.interfaces import CANCELLABLE
from lovely.remotetask.interfaces import ICronJob
from lovely.remotetask.interfaces import MANAGE
from lovely.remotetask.interfaces import NotRetryable
from lovely.remotetask.interfaces import PROCESSING


_ = MessageFactory('lovely.remotetask')


#: What the page shows for data nested too deeply to print.
TOO_DEEP = '[nested too deeply to show]'
#: The most characters the page shows of a value (input, output, error,
#: traceback); a longer one is cut, and the page says how long it is.
SHOWN = 10000
#: The most jobs the page links to in "Runs after" and "Followed by".
LINKED = 100
#: Data larger than this (bytes, pickled) is not pretty-printed (which
#: would build its whole text) but abbreviated (``reprlib``).
PRETTY = 256 * 1024

#: What a button of the job page tells when it is done.
MESSAGES = {
    'retried': _('The job was queued again.'),
    'not-retryable': _('Only jobs in error or cancelled can be retried.'),
    'cancelled': _('The job was cancelled.'),
    'cancel-requested': _('The job is asked to stop: it ends cancelled when '
                          'its task notices, or returns.'),
    'not-cancelled': _('The job has finished: it can no longer be '
                       'cancelled.'),
}


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


#: The most characters the history shows of an attempt's error.
SHORT = 200


def _short(text):
    """An error message in one line of at most ``SHORT`` characters.

    >>> _short('x' * 300)[-5:], len(_short('x' * 300))
    ('xxxx…', 200)
    >>> _short(None)
    ''
    """
    text = ' '.join((text or '').split())
    return text if len(text) <= SHORT else text[:SHORT - 1] + '…'


class JobView(BrowserPage):
    """Everything about one job: data, dates, attempts, worker, error.

    The template inserts every value as text: job data is user data and
    comes back escaped.
    """

    template = ViewPageTemplateFile('job.pt')

    #: (button name, label, method name, statuses it is shown in)
    buttons = (
        ('RETRY', _('Retry'), 'retry', RETRYABLE),
        ('CANCEL', _('Cancel'), 'cancel', CANCELLABLE + (PROCESSING,)),
    )

    def __call__(self):
        refused = refuseCrossOrigin(self.request)
        if refused is not None:
            return refused
        if self.request.method == 'POST':
            for name, label, method, statuses in self.buttons:
                if name in self.request.form:
                    if not self.canManage():
                        raise Unauthorized('lovely.remotetask.Manage is '
                                           'needed')
                    done = getattr(self, method)()
                    url = absoluteURL(self.context, self.request)
                    self.request.response.redirect(
                        f'{url}?{urlencode({"done": done})}', status=303)
                    return ''
        # Job data may hold lone surrogates: shown escaped, not a 500.
        return encodable(self.template())

    def canManage(self):
        """May the user press the buttons (``lovely.remotetask.Manage``)?"""
        return checkPermission(MANAGE, self.context.__parent__)

    def visibleButtons(self):
        """The buttons for this user and the job's status."""
        if not self.canManage():
            return []
        return [{'name': name, 'label': label}
                for name, label, method, statuses in self.buttons
                if self.context.status in statuses]

    def message(self):
        """The message named by ``done`` in the query, or None."""
        key = self.request.form.get('done')
        return MESSAGES.get(key) if isinstance(key, str) else None

    def retry(self):
        try:
            self.context.__parent__.retry(self.context.id)
        except NotRetryable:
            return 'not-retryable'  # its status changed since it was shown
        return 'retried'

    def cancel(self):
        job = self.context
        if not job.__parent__.cancel(job.id):
            return 'not-cancelled'
        return 'cancel-requested' if job.status == PROCESSING else 'cancelled'

    def progress(self):
        """The job's last progress report as text: ``{'percent',
        'message', 'updated'}``, or None."""
        report = self.context.__parent__.getProgress(self.context.id)
        if report is None:
            return None
        fraction = report['fraction']
        return {'percent': None if fraction is None
                else f'{fraction * 100:.0f} %',
                'fraction': fraction,
                'message': report['message'],
                'updated': formatDate(report['updated'])}

    def cancelRequested(self):
        """Who asked the running job to stop, and when, as text; None if
        nobody did."""
        job = removeSecurityProxy(self.context)
        request = job.cancelRequest
        if job.status != PROCESSING or request is None \
                or not request.requested:
            return None
        return ' '.join(filter(None, (formatDate(request.at), request.by)))

    def history(self):
        """The job's last attempts, newest first, as text by column."""
        return [{'number': str(attempt.number),
                 'started': formatDate(attempt.started),
                 'ended': formatDate(attempt.ended),
                 'worker': attempt.worker or '',
                 'outcome': attempt.outcome,
                 'cssClass': statusClass(
                     'error' if attempt.outcome == 'failed'
                     else attempt.outcome),
                 'error': _short(attempt.error)}
                for attempt in reversed(
                    removeSecurityProxy(self.context).history)]

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

    def runsAfter(self):
        """The jobs this one waits or waited for (see ``related``)."""
        return self.related(self.context.after)

    def followedBy(self):
        """The jobs added to run after this one (see ``related``)."""
        return self.related(self.context.dependants)

    def related(self, ids):
        """Jobs by id, to link to: None if there are none, else
        ``{'jobs', 'more'}``: the first ``LINKED`` of them as ``{'id',
        'url', 'status', 'class'}`` (url None for a job cleaned since),
        and how many more there are."""
        if not ids:
            return None
        service = self.context.__parent__
        base = absoluteURL(service, self.request)
        jobs = []
        for jobid in ids[:LINKED]:
            job = service.jobs.get(jobid)
            status = None if job is None else job.status
            jobs.append({'id': jobid,
                         'url': None if job is None else f'{base}/{jobid}',
                         'status': status or _('removed'),
                         'class': statusClass(status) if status else ''})
        return {'jobs': jobs, 'more': max(0, len(ids) - LINKED)}

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

    def nodes(self):
        """The cell as nodes (see util.py)."""
        job = self.context
        if job.scheduledFor is None:
            when = translate(_('not scheduled'), context=self.request)
        else:
            when = translate(_('next run ${date}',
                               mapping={'date': formatDate(job.scheduledFor)}),
                             context=self.request)
        return [element('span', formatSchedule(job), {'class': 'schedule'}),
                f' ({when})']

    def __call__(self):
        return renderNodes(self.nodes())
