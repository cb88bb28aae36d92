"""The view names of lovely.remotetask 0.5.2 that have new ones.

``@@addcronjob.html`` (a service's add-cron form) and ``@@editjob`` (a
cron job's edit form) redirect, permanently, to ``@@addcron.html`` and
``@@edit.html``, with the query string they were given.  The ``detail``
view of a job (0.5.2's ``JobDetail``) is in job.py.
"""
from zope.publisher.browser import BrowserPage
from zope.traversing.browser import absoluteURL


class Redirect(BrowserPage):
    """Redirect (301) to the context's view ``target``."""

    target = None

    def __call__(self):
        url = f'{absoluteURL(self.context, self.request)}/@@{self.target}'
        query = self.request.get('QUERY_STRING')
        if query:
            url = f'{url}?{query}'
        self.request.response.redirect(url, status=301, trusted=True)
        return ''


class AddCronJob(Redirect):
    """``@@addcronjob.html``: now ``@@addcron.html``."""

    target = 'addcron.html'


class EditJob(Redirect):
    """``@@editjob``: now ``@@edit.html``."""

    target = 'edit.html'
