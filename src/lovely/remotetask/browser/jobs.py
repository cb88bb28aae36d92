"""The Jobs tab of a task service: the job table and the buttons.

The buttons change the queue, so they act on POST requests only: a GET
carrying a button's name (a link, a prefetch, a crawler) changes nothing.
A POST from a page of another site is refused (403, see util.py).  They
need ``lovely.remotetask.Manage``; users who may only look at the service
(``lovely.remotetask.View``) see neither the buttons nor the checkboxes.

After a button did its work, the page redirects (303 See Other) to
itself, so that reloading it does not post the form again.  The message
of the button travels in the query (``done``, with its numbers): only the
fixed messages below can be shown that way.
"""
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
}

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
        ('CANCEL_ALL', _('Cancel all'), 'cancelAll'),
        ('CLEAN_COMPLETED', _('Remove completed'), 'cleanCompleted'),
        ('CLEAN_CANCELLED', _('Remove cancelled'), 'cleanCancelled'),
        ('CLEAN_ERROR', _('Remove error'), 'cleanError'),
        ('CLEAN_ALL', _('Remove all'), 'cleanAll'),
        ('START_PROCESSING', _('Start Processing'), 'startProcessing'),
        ('STOP_PROCESSING', _('Stop Processing'), 'stopProcessing'),
    )

    message = None

    def __call__(self):
        refused = refuseCrossOrigin(self.request)
        if refused is not None:
            return refused
        if self.update():
            return ''
        return self.template()

    def update(self):
        """Run a posted button, else set up the page; true if the response
        is a redirect."""
        self.status = self._choice('status', STATUSES)
        self.task = self._choice('task', self.taskNames())
        self.table = JobsTable(self.context, self.request,
                               status=self.status, task=self.task,
                               selectable=self.canManage())
        if self.request.method == 'POST':
            done = self.handleButtons()
            if done is not None:
                self.request.response.redirect(self.doneURL(*done),
                                               status=303)
                return True
        else:
            self.message = self.doneMessage()
        self.table.update()
        return False

    def _choice(self, name, allowed):
        value = self.request.form.get(name)
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

    def visibleButtons(self):
        """The buttons for this user and this state of the service."""
        if not self.canManage():
            return []
        hidden = ('STOP_PROCESSING' if not self.isProcessing()
                  else 'START_PROCESSING')
        return [{'name': name, 'label': label}
                for name, label, method in self.buttons if name != hidden]

    # -- the buttons ---------------------------------------------------------

    def handleButtons(self):
        """Run the action of the pressed button; return what it tells,
        ``(key of MESSAGES, numbers)``, or None if no button was pressed.
        """
        for name, label, method in self.buttons:
            if name in self.request.form:
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
