"""A job's own page (SERVICE/JOBID) and the detail cell of cron jobs."""
import html
import pprint

from zope.browserpage import ViewPageTemplateFile
from zope.i18n import translate
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.schedule import formatSchedule
from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.browser.util import statusClass
from lovely.remotetask.interfaces import ICronJob


_ = MessageFactory('lovely.remotetask')


#: What the page shows for data nested too deeply to print.
TOO_DEEP = '[nested too deeply to show]'


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

    def input(self):
        """The job's input as text, or None."""
        return formatData(self.context.input)

    def output(self):
        """The job's output as text, or None."""
        return formatData(self.context.output)

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

    def attempts(self):
        """``attempts`` of the most allowed, when the job has its own
        limit; else just the count."""
        job = self.context
        if job.maxRetries is None:
            return str(job.attempts)
        return f'{job.attempts} / {job.maxRetries + 1}'

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
