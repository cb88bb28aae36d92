"""The Workers tab of a task service: who processes it, pause and resume.

The table lists the workers registered with the service (see
workers.py): every processor thread of every process, with what it runs
now and how long ago its last heartbeat was.  The Pause and Resume
buttons reach every worker of every process (they act on POST requests
only, from this site, with ``lovely.remotetask.Manage``, as the buttons
of the Jobs tab; see jobs.py), then redirect to the page.
"""
import os
import socket

from zope.browserpage import ViewPageTemplateFile
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.security import checkPermission
from zope.security.interfaces import Unauthorized
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.browser.util import refuseCrossOrigin
from lovely.remotetask.interfaces import MANAGE


_ = MessageFactory('lovely.remotetask')

MESSAGES = {
    'paused': _('Paused: no worker claims jobs from this service until it '
                'is resumed (running jobs finish).'),
    'resumed': _('Resumed: the workers claim jobs again.'),
}


def formatAge(seconds):
    """``4 s``, ``3 min``, ``2 h`` ago."""
    if seconds < 120:
        return f'{seconds:.0f} s'
    if seconds < 7200:
        return f'{seconds / 60:.0f} min'
    return f'{seconds / 3600:.0f} h'


def thisProcess(worker):
    """Is the worker a processor of this process?"""
    return (worker['host'], worker['pid']) == (socket.gethostname(),
                                               os.getpid())


class WorkersView(BrowserPage):
    """The workers of a service and the cluster's pause flag."""

    template = ViewPageTemplateFile('workers.pt')
    message = None

    def __call__(self):
        refused = refuseCrossOrigin(self.request)
        if refused is not None:
            return refused
        form = self.request.form
        if self.request.method == 'POST':
            for name, method in (('PAUSE', 'pause'), ('RESUME', 'resume')):
                if name in form:
                    if not self.canManage():
                        raise Unauthorized('lovely.remotetask.Manage is '
                                           'needed')
                    getattr(self.context, method)()
                    self.request.response.redirect(
                        f'{self.url()}?done={method}d', status=303)
                    return ''
        done = form.get('done')
        if isinstance(done, str) and done in MESSAGES:
            self.message = MESSAGES[done]
        return self.template()

    def url(self):
        return absoluteURL(self.context, self.request) + '/@@workers.html'

    def canManage(self):
        return checkPermission(MANAGE, self.context)

    def isPaused(self):
        return self.context.isPaused()

    def workers(self):
        """The workers, the living first, each ready for the template."""
        service = absoluteURL(self.context, self.request)
        order = {'alive': 0, 'stopping': 1, 'late': 2, 'dead': 3}
        rows = []
        for worker in sorted(self.context.listWorkers(), key=lambda w: (
                order.get(w['status'], 4), w['host'], w['pid'], w['id'])):
            rows.append(dict(
                worker,
                started=formatDate(worker['started']),
                age=formatAge(worker['age']),
                services=', '.join(worker['services']),
                here=thisProcess(worker),
                jobs=[{'id': jobid, 'url': f'{service}/{jobid}'}
                      for jobid in worker['running']]))
        return rows
