"""The confirmation of the Jobs tab's buttons that act on many jobs.

Cancel all, the Remove buttons, Retry and Retry all first answer with a
page (confirm.pt) that says what will happen to how many jobs; its button
posts the same form again, with ``confirmed``, to the same address (the
filters and the page of the table are in its query).  Nothing changes
before that second POST.
"""
from urllib.parse import urlencode

from zope.i18nmessageid import MessageFactory
from zope.security.interfaces import Unauthorized
from zope.traversing.browser import absoluteURL

from lovely.remotetask.history import RETRYABLE
from lovely.remotetask.interfaces import CANCELLABLE
from lovely.remotetask.interfaces import CANCELLED
from lovely.remotetask.interfaces import COMPLETED
from lovely.remotetask.interfaces import ERROR
from lovely.remotetask.interfaces import REMOVABLE


_ = MessageFactory('lovely.remotetask')

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


class ConfirmMixin:
    """Asking before a bulk button acts (a part of ``JobsView``)."""

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
        query = urlencode(self.keptQuery())
        url = absoluteURL(self.context, self.request)
        return f'{url}?{query}' if query else url

    def retryStatus(self):
        """The status whose jobs Retry all queues again."""
        return self.status if self.status in RETRYABLE else ERROR
