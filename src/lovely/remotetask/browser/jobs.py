"""The Jobs tab of a task service: the job table and the buttons.

The buttons change the queue, so they act on POST requests only: a GET
carrying a button's name (a link, a prefetch, a crawler) changes nothing.
A POST from a page of another site is refused (403, see util.py).  They
need ``lovely.remotetask.Manage``; users who may only look at the service
(``lovely.remotetask.View``) see neither the buttons nor the checkboxes.

The buttons that change many jobs at once (Cancel all, the Remove
buttons, the Retry buttons) first answer with a page that says what will
happen to how many jobs; its button posts again, with ``confirmed``.

After a button did its work, the page redirects (303 See Other) to
itself, so that reloading it does not post the form again.  The message
of the button travels in the query (``done``, with its numbers): only the
fixed messages below can be shown that way.

The search (a GET form): a job id jumps to the job's page; status, task
and a time range of creation (``createdAfter``, ``createdBefore``: UTC,
``YYYY-MM-DD HH:MM[:SS]`` or the ``T`` form of a browser's date field)
filter the table.  ``jobs.json`` (``JobsData``) is the same data for the
live refresh of the page (jobs.js): the counts and the rows of the page.
"""
import datetime
import json
from urllib.parse import parse_qsl
from urllib.parse import urlencode

from zope.browserpage import ViewPageTemplateFile
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.security import checkPermission
from zope.security.interfaces import Unauthorized
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL

from lovely.remotetask import bulk
from lovely.remotetask.browser.table import JobsTable
from lovely.remotetask.browser.util import refuseCrossOrigin
from lovely.remotetask.browser.util import statusClass
from lovely.remotetask.history import RETRYABLE
from lovely.remotetask.interfaces import CANCELLABLE
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import MANAGE
from lovely.remotetask.interfaces import REMOVABLE
from lovely.remotetask.interfaces import STATUSES


_ = MessageFactory('lovely.remotetask')


#: What a button tells when it is done: key -> (message, its numbers).
MESSAGES = {
    'none-selected': (_('No jobs were selected.'), ()),
    'cancelled': (_('Jobs were successfully cancelled.'), ()),
    'some-cancelled': (
        _('${cancelled} of ${selected} jobs cancelled; the others are '
          'running, finished or removed.'), ('cancelled', 'selected')),
    'all-cancelled': (_('All jobs cancelled'), ()),
    'cleaned': (_('Cleaned ${count} Jobs'), ('count',)),
    'started': (_('Processing started'), ()),
    'stopped': (_('Processing stopped'), ()),
    'retried': (_('${count} jobs queued again.'), ('count',)),
    'some-retried': (
        _('${retried} of ${selected} jobs queued again; the others were '
          'not in error or cancelled, or removed.'),
        ('retried', 'selected')),
}

#: The buttons that ask first, and what they tell before:
#: name -> (message with ``count``, statuses counted or None: selected).
CONFIRM = {
    'CANCEL_ALL': (_('Cancel all: ${count} jobs that wait (queued, '
                     'delayed, cron, start later) will be cancelled.'),
                   CANCELLABLE),
    'CLEAN_COMPLETED': (_('Remove completed: ${count} completed jobs will '
                          'be removed for good.'), (COMPLETED,)),
    'CLEAN_CANCELLED': (_('Remove cancelled: ${count} cancelled jobs will '
                          'be removed for good.'), (CANCELLED,)),
    'CLEAN_ERROR': (_('Remove error: ${count} failed jobs will be removed '
                      'for good.'), (ERROR,)),
    'CLEAN_ALL': (_('Remove all: ${count} finished jobs (completed, '
                    'cancelled, error) will be removed for good.'),
                  REMOVABLE),
    'RETRY': (_('Retry: the ${count} selected jobs will be queued again '
                '(those that failed or were cancelled).'), None),
    'RETRY_ALL': (_('Retry all: ${count} jobs in ${status}${of} will be '
                    'queued again.'), 'retryable'),
}
#: The time formats of the search's time range (UTC).
TIME_FORMATS = ('%Y-%m-%dT%H:%M:%S', '%Y-%m-%dT%H:%M', '%Y-%m-%d %H:%M:%S',
                '%Y-%m-%d %H:%M', '%Y-%m-%d')
#: Seconds between two refreshes of the live page.
REFRESH = 3


def parseTime(text):
    """A time of the search as an aware UTC datetime; None if it is not.

    >>> print(parseTime('2026-05-01T10:30'), parseTime(' 2026-05-01 '))
    2026-05-01 10:30:00+00:00 2026-05-01 00:00:00+00:00
    >>> parseTime('yesterday'), parseTime(['2026-05-01'])
    (None, None)
    """
    if not isinstance(text, str):
        return None
    for format in TIME_FORMATS:
        try:
            return datetime.datetime.strptime(text.strip(), format).replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    return None


#: The query parameters of a message.
DONE_PARAMETERS = {'done'} | {name for text, names in MESSAGES.values()
                              for name in names}


def message(key, **numbers):
    """The message ``key`` of ``MESSAGES`` with its numbers."""
    text, names = MESSAGES[key]
    return _(text, mapping={name: numbers[name] for name in names})


def _number(value):
    """A submitted job id or count as an int; None if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.strip()
        if value.isascii() and value.isdigit() and len(value) < 20:
            return int(value)
    return None


class JobsView(BrowserPage):
    """The jobs of a service: counts, filters, a table page, buttons."""

    template = ViewPageTemplateFile('jobs.pt')

    #: (button name, label, method name): in the order they are shown
    buttons = (
        ('CANCEL', _('Cancel'), 'cancelSelected'),
        ('RETRY', _('Retry'), 'retrySelected'),
        ('RETRY_ALL', _('Retry all'), 'retryAll'),
        ('CANCEL_ALL', _('Cancel all'), 'cancelAll'),
        ('CLEAN_COMPLETED', _('Remove completed'), 'cleanCompleted'),
        ('CLEAN_CANCELLED', _('Remove cancelled'), 'cleanCancelled'),
        ('CLEAN_ERROR', _('Remove error'), 'cleanError'),
        ('CLEAN_ALL', _('Remove all'), 'cleanAll'),
        ('START_PROCESSING', _('Start Processing'), 'startProcessing'),
        ('STOP_PROCESSING', _('Stop Processing'), 'stopProcessing'),
    )

    confirmTemplate = ViewPageTemplateFile('confirm.pt')

    message = None
    #: The button waiting for confirmation: ``{'name', 'label', 'text',
    #: 'count', 'jobs'}``.
    confirmation = None

    def __call__(self):
        refused = refuseCrossOrigin(self.request)
        if refused is not None:
            return refused
        if self.update():
            return ''
        if self.confirmation is not None:
            return self.confirmTemplate()
        return self.template()

    def update(self):
        """Run a posted button, else set up the page; true if the response
        is a redirect."""
        self.status = self._choice('status', STATUSES)
        self.task = self._choice('task', self.taskNames())
        self.readTimeRange()
        self.table = JobsTable(self.context, self.request,
                               status=self.status, task=self.task,
                               selectable=self.canManage(),
                               created=self.created,
                               createdQuery=self.createdQuery)
        if self.request.method == 'POST':
            done = self.handleButtons()
            if done is not None:
                self.request.response.redirect(self.doneURL(*done),
                                               status=303)
                return True
            if self.confirmation is not None:
                return False
        else:
            self.message = self.doneMessage() or self.message
            if self.jumpToJob():
                return True
        self.table.update()
        return False

    def readTimeRange(self):
        """The search's time range: ``created`` (for the service) and
        ``createdQuery`` (the text, for the links); a time that is not
        one is dropped, and said so."""
        self.created, self.createdQuery = {}, {}
        for name in ('createdAfter', 'createdBefore'):
            text = self._param(name)
            if not text or not isinstance(text, str):
                continue
            when = parseTime(text)
            if when is None:
                self.message = _('Not a time: ${text} (YYYY-MM-DD HH:MM, '
                                 'UTC)', mapping={'text': text[:40]})
                continue
            self.created[name] = when
            self.createdQuery[name] = text.strip()

    def jumpToJob(self):
        """A job id searched for: redirect to the job's page if there is
        such a job (true), else say so."""
        text = self.request.form.get('jobid')
        if not text or not isinstance(text, str) or not text.strip():
            return False
        jobid = _number(text.lstrip('#'))
        job = None if jobid is None else removeSecurityProxy(
            self.context).jobs.get(jobid)
        if job is None:
            self.message = _('There is no job ${id}.',
                             mapping={'id': text.strip()[:20]})
            return False
        self.request.response.redirect(
            f'{absoluteURL(self.context, self.request)}/{jobid}')
        return True

    def searched(self):
        """Does the page show a search's result (any filter)?"""
        return bool(self.status or self.task or self.created)

    def _param(self, name):
        """A filter of the page: from the form, else (a POST, whose query
        the publisher does not read) from the query of the URL."""
        form = self.request.form
        if name in form or self.request.method != 'POST':
            return form.get(name)
        values = [value for key, value in parse_qsl(
            self.request.get('QUERY_STRING', '')) if key == name]
        return values[0] if len(values) == 1 else None

    def _choice(self, name, allowed):
        value = self._param(name)
        return value if isinstance(value, str) and value in allowed else None

    def doneURL(self, key, numbers):
        """This page telling that a button did its work.

        The form posts to the URL of the page with its filters, order and
        batch in the query (``actionURL``), which the publisher does not
        read for a POST: the page the redirect goes to keeps that query.
        """
        kept = [(name, value) for name, value in parse_qsl(
                    self.request.get('QUERY_STRING', ''),
                    keep_blank_values=True)
                if name not in DONE_PARAMETERS]
        query = urlencode(sorted(kept + [('done', key)]
                                 + list(numbers.items())))
        return f'{absoluteURL(self.context, self.request)}?{query}'

    def doneMessage(self):
        """The message named by ``done`` in the query, or None."""
        form = self.request.form
        key = form.get('done')
        if not isinstance(key, str) or key not in MESSAGES:
            return None
        numbers = {}
        for name in MESSAGES[key][1]:
            number = _number(form.get(name))
            if number is None:
                return None
            numbers[name] = number
        return message(key, **numbers)

    # -- what the page shows --------------------------------------------------

    def taskNames(self):
        """The names of the tasks jobs can be added for, sorted."""
        return sorted(self.context.getAvailableTasks())

    def canManage(self):
        """May the user press the buttons (``lovely.remotetask.Manage``)?"""
        return checkPermission(MANAGE, self.context)

    def isProcessing(self):
        """Does the service process jobs in this process?"""
        return self.context.isProcessing()

    def otherWorkers(self):
        """How many workers of other processes are alive (or stopping)."""
        from lovely.remotetask.browser.workers import thisProcess
        return len([w for w in self.context.listWorkers()
                    if w['status'] in ('alive', 'stopping')
                    and not thisProcess(w)])

    def isPaused(self):
        return self.context.isPaused()

    def workersURL(self):
        return absoluteURL(self.context, self.request) + '/@@workers.html'

    def statusCounts(self):
        """Each status with the number of its jobs and a filter link."""
        service = self.context
        return [{'status': status,
                 'count': service.countJobs(status=status),
                 'cssName': statusClass(status)[len('status-'):],
                 'cssClass': statusClass(status),
                 'selected': status == self.status,
                 'url': self.table.url(status=status, task=None)}
                for status in STATUSES]

    def totalCount(self):
        """The number of jobs of the service."""
        return self.context.countJobs()

    def filteredCount(self):
        """The number of jobs that the filters select."""
        return len(self.table.batch.sequence) if self.table.batch else 0

    def actionURL(self):
        """Where the buttons post to: this page, with its filters, order
        and batch."""
        batch = self.table.batch
        return self.table.url(**{
            'jobs-batchStart': batch.start if batch and batch.start else None})

    def allURL(self):
        """The page without filters."""
        return self.table.url(status=None, task=None)

    def serviceURL(self):
        """The URL of the service (the filter form goes there)."""
        return absoluteURL(self.context, self.request)

    def liveURL(self):
        """The JSON of this page (jobs.json, with its query)."""
        query = self.request.get('QUERY_STRING', '')
        kept = urlencode([(name, value) for name, value in parse_qsl(
            query, keep_blank_values=True) if name not in DONE_PARAMETERS])
        url = absoluteURL(self.context, self.request) + '/@@jobs.json'
        return f'{url}?{kept}' if kept else url

    def refreshInterval(self):
        """Seconds between two refreshes of the live page."""
        return REFRESH

    def firstPage(self):
        """Is the table at its first page (which the live refresh
        renews)?"""
        batch = self.table.batch
        return batch is None or not batch.start

    def visibleButtons(self):
        """The buttons for this user and this state of the service."""
        if not self.canManage():
            return []
        hidden = {'STOP_PROCESSING' if not self.isProcessing()
                  else 'START_PROCESSING'}
        if self.status not in (None,) + RETRYABLE or self.created:
            # Retry all retries the jobs in error (or, filtered so, the
            # cancelled ones) of the task filter; not a time range.
            hidden.add('RETRY_ALL')
        return [{'name': name, 'label': label}
                for name, label, method in self.buttons
                if name not in hidden]

    def retryStatus(self):
        """The status whose jobs Retry all queues again."""
        return self.status if self.status in RETRYABLE else ERROR

    # -- the buttons ---------------------------------------------------------

    def handleButtons(self):
        """Run the action of the pressed button; return what it tells,
        ``(key of MESSAGES, numbers)``, or None if no button was pressed.
        """
        form = self.request.form
        for name, label, method in self.buttons:
            if name in form:
                if name in CONFIRM and 'confirmed' not in form:
                    self.confirm(name, label)
                    return None
                return getattr(self, method)()
        return None

    # -- confirmation ----------------------------------------------------------

    def confirm(self, name, label):
        """Ask before the button ``name`` acts: set ``confirmation``."""
        if not self.canManage():
            raise Unauthorized('lovely.remotetask.Manage is needed')
        text, counted = CONFIRM[name]
        jobs = []
        if counted is None:
            jobids, selected = self.selectedIds()
            jobs = [jobid for jobid in jobids if jobid is not None]
            count = len(jobs)
        elif counted == 'retryable':
            count = self.context.countJobs(status=self.retryStatus(),
                                           task=self.task)
        else:
            count = sum(self.context.countJobs(status=status)
                        for status in counted)
        of = ''
        if counted == 'retryable' and self.task is not None:
            of = f' of task {self.task}'
        self.confirmation = {
            'name': name, 'label': label, 'count': count, 'jobs': jobs,
            'text': _(text, mapping={'count': count, 'of': of,
                                     'status': self.retryStatus()})}

    def backURL(self):
        """The page the confirmation came from, with its query (Back;
        the confirmation posts there too)."""
        query = urlencode([(name, value) for name, value in parse_qsl(
            self.request.get('QUERY_STRING', ''), keep_blank_values=True)
            if name not in DONE_PARAMETERS])
        url = absoluteURL(self.context, self.request)
        return f'{url}?{query}' if query else url

    def selectedIds(self):
        """The ids of the selected jobs, and how many values were sent.

        Values that are not job ids (``jobs.a:record=1``, ``abc``) are
        counted, and skipped.
        """
        jobids = self.request.form.get('jobs', [])
        if not isinstance(jobids, list):
            jobids = [jobids]
        return [_number(jobid) for jobid in jobids], len(jobids)

    def cancelSelected(self):
        jobids, selected = self.selectedIds()
        if not selected:
            return 'none-selected', {}
        cancelled = 0
        for jobid in jobids:
            if jobid is None:
                continue
            try:
                cancelled += bool(self.context.cancel(jobid))
            except (KeyError, ValueError):
                # Removed (or never there) since the page was shown.
                pass
        if cancelled < selected:
            return 'some-cancelled', {'cancelled': cancelled,
                                      'selected': selected}
        return 'cancelled', {}

    def _unproxied(self):
        """The service for ``bulk``, which commits through its connection:
        the permission the proxy would check is checked here."""
        if not self.canManage():
            raise Unauthorized('lovely.remotetask.Manage is needed')
        return removeSecurityProxy(self.context)

    def cancelAll(self):
        bulk.cancelAll(self._unproxied())
        return 'all-cancelled', {}

    def retrySelected(self):
        jobids, selected = self.selectedIds()
        if not selected:
            return 'none-selected', {}
        retried = 0
        for jobid in jobids:
            if jobid is None:
                continue
            try:
                self.context.retry(jobid)
            except (KeyError, ValueError):
                # Not failed or cancelled (NotRetryable), or removed.
                continue
            retried += 1
        return 'some-retried', {'retried': retried, 'selected': selected}

    def retryAll(self):
        count = bulk.retryAll(self._unproxied(), self.retryStatus(),
                              self.task)
        return 'retried', {'count': count}

    def _clean(self, statuses):
        return 'cleaned', {'count': bulk.clean(self._unproxied(), statuses)}

    def cleanCompleted(self):
        return self._clean((COMPLETED,))

    def cleanCancelled(self):
        return self._clean((CANCELLED,))

    def cleanError(self):
        return self._clean((ERROR,))

    def cleanAll(self):
        return self._clean(REMOVABLE)

    def startProcessing(self):
        self.context.startProcessing()
        return 'started', {}

    def stopProcessing(self):
        self.context.stopProcessing()
        return 'stopped', {}


class JobsData(JobsView):
    """``jobs.json``: the counts and the rows of the Jobs tab, for its
    live refresh (jobs.js); GET only, the query of the page.

    ``rows`` is the markup of the table's rows (escaped as on the page),
    or null when the page is not the first (a later page is not renewed:
    its rows would move under the reader).
    """

    def __call__(self):
        refused = refuseCrossOrigin(self.request)
        if refused is not None:
            return refused
        self.status = self._choice('status', STATUSES)
        self.task = self._choice('task', self.taskNames())
        self.readTimeRange()
        self.table = JobsTable(self.context, self.request,
                               status=self.status, task=self.task,
                               selectable=self.canManage(),
                               created=self.created,
                               createdQuery=self.createdQuery)
        self.table.update()
        data = {
            'counts': {item['status']: item['count']
                       for item in self.statusCounts()},
            'total': self.totalCount(),
            'found': self.filteredCount(),
            'jobs': [{'id': row[0][0].id, 'status': row[0][0].status}
                     for row in self.table.rows],
            'rows': (self.table.renderRows()
                     if self.firstPage() else None),
        }
        response = self.request.response
        response.setHeader('Content-Type', 'application/json')
        response.setHeader('Cache-Control', 'no-store')
        return json.dumps(data)
