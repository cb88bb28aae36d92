"""The Jobs tab of a task service: the job table and the buttons.

The buttons change the queue, so they act on POST requests only: a GET
carrying a button's name (a link, a prefetch, a crawler) changes nothing.
They need ``lovely.remotetask.Manage``; users who may only look at the
service (``lovely.remotetask.View``) do not see them.
"""
from zope.browserpage import ViewPageTemplateFile
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.security import checkPermission
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.table import JobsTable
from lovely.remotetask.browser.table import statusClass
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import REMOVABLE
from lovely.remotetask.interfaces import STATUSES


_ = MessageFactory('lovely.remotetask')

MANAGE = 'lovely.remotetask.Manage'


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
        self.update()
        return self.template()

    def update(self):
        if self.request.method == 'POST':
            self.message = self.handleButtons()
        self.status = self._choice('status', STATUSES)
        self.task = self._choice('task', self.taskNames())
        self.table = JobsTable(self.context, self.request,
                               status=self.status, task=self.task)
        self.table.update()

    def _choice(self, name, allowed):
        value = self.request.form.get(name) or None
        return value if value in allowed else None

    # -- what the page shows --------------------------------------------------

    def taskNames(self):
        return sorted(self.context.getAvailableTasks())

    def canManage(self):
        return checkPermission(MANAGE, self.context)

    def isProcessing(self):
        return self.context.isProcessing()

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
        return self.context.countJobs()

    def filteredCount(self):
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
        """Run the action of the pressed button; return its message."""
        for name, label, method in self.buttons:
            if name in self.request.form:
                return getattr(self, method)()
        return None

    def cancelSelected(self):
        jobids = self.request.form.get('jobs', [])
        if not isinstance(jobids, list):
            jobids = [jobids]
        if not jobids:
            return _('No jobs were selected.')
        skipped = 0
        for jobid in jobids:
            try:
                skipped += not self.context.cancel(int(jobid))
            except (KeyError, ValueError):
                # Removed (or never there) since the page was shown.
                skipped += 1
        if skipped:
            return _('${cancelled} of ${selected} jobs cancelled; the others '
                     'are running, finished or removed.',
                     mapping={'cancelled': len(jobids) - skipped,
                              'selected': len(jobids)})
        return _('Jobs were successfully cancelled.')

    def cancelAll(self):
        self.context.cancelAll()
        return _('All jobs cancelled')

    def _clean(self, statuses):
        count = self.context.clean(statuses)
        return _('Cleaned ${count} Jobs', mapping={'count': count})

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
        return _('Processing started')

    def stopProcessing(self):
        self.context.stopProcessing()
        return _('Processing stopped')
