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
from lovely.remotetask.browser.confirm import CONFIRM
from lovely.remotetask.browser.confirm import ConfirmMixin
from lovely.remotetask.browser.search import SearchMixin
from lovely.remotetask.browser.search import _number
from lovely.remotetask.browser.table import JobsTable
from lovely.remotetask.browser.util import encodable
from lovely.remotetask.browser.util import refuseCrossOrigin
from lovely.remotetask.browser.util import statusClass
from lovely.remotetask.history import RETRYABLE
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

#: Seconds between two refreshes of the live page.
REFRESH = 3


#: The query parameters of a message.
DONE_PARAMETERS = {'done'} | {name for text, names in MESSAGES.values()
                              for name in names}


def message(key, **numbers):
    """The message ``key`` of ``MESSAGES`` with its numbers."""
    text, names = MESSAGES[key]
    return _(text, mapping={name: numbers[name] for name in names})


class JobsView(SearchMixin, ConfirmMixin, BrowserPage):
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
        # Job data may hold lone surrogates: shown escaped, not a 500.
        if self.confirmation is not None:
            return encodable(self.confirmTemplate())
        return encodable(self.template())

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

    def doneURL(self, key, numbers):
        """This page telling that a button did its work.

        The form posts to the URL of the page with its filters, order and
        batch in the query (``actionURL``), which the publisher does not
        read for a POST: the page the redirect goes to keeps that query.
        """
        query = urlencode(sorted(self.keptQuery() + [('done', key)]
                                 + list(numbers.items())))
        return f'{absoluteURL(self.context, self.request)}?{query}'

    def keptQuery(self):
        """The query of this page without the message of a button."""
        return [(name, value) for name, value in parse_qsl(
                    self.request.get('QUERY_STRING', ''),
                    keep_blank_values=True)
                if name not in DONE_PARAMETERS]

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
        # The cursor that found the page: the page after the button's
        # work is found by it again, not walked to.
        return self.table.url(**{
            'jobs-batchStart': batch.start if batch and batch.start else None,
            **self.table.pageCursor})

    def allURL(self):
        """The page without filters."""
        return self.table.url(status=None, task=None)

    def serviceURL(self):
        """The URL of the service (the filter form goes there)."""
        return absoluteURL(self.context, self.request)

    def liveURL(self):
        """The JSON of this page (jobs.json, with its query)."""
        kept = urlencode(self.keptQuery())
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

    ``rows`` is the table's rows as data (``JobsTable.rowData``: the
    nodes of each cell, which jobs.js builds with DOM calls, never
    parsing markup), or null when the page is not the first (a later page
    is not renewed: its rows would move under the reader).
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
            'rows': self.table.rowData() if self.firstPage() else None,
        }
        response = self.request.response
        response.setHeader('Content-Type', 'application/json')
        response.setHeader('Cache-Control', 'no-store')
        return json.dumps(data)
