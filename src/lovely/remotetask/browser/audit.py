"""The Audit tab of a task service: who changed the queue, and when.

Newest first, a page of ``PAGE`` entries at a time, filtered by principal
and by action (see audit.py).  Looking at it needs
``lovely.remotetask.View``, as the job pages that name who added a job:
the log holds principal ids and job ids, never job data.  It is read
only: GET parameters choose what is shown and change nothing.
"""
import itertools
from urllib.parse import urlencode

from zope.browserpage import ViewPageTemplateFile
from zope.publisher.browser import BrowserPage
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL

from lovely.remotetask import audit
from lovely.remotetask.browser.util import formText
from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.interaction import lookup


#: Entries on one page.
PAGE = 50
#: The filter value (and label) of the entries made outside an
#: interaction (principal None).
NOBODY = '-'
NOBODY_LABEL = '[no principal: a script or the server]'


class AuditView(BrowserPage):
    """The audit log of a service, filtered and paged."""

    template = ViewPageTemplateFile('audit.pt')

    def __call__(self):
        self.update()
        return self.template()

    def update(self):
        form = self.request.form
        # The log is the service's own data, read here under View.
        self.log = audit.auditLog(removeSecurityProxy(self.context))
        self.principalIds = sorted(
            self.log.principals() if self.log is not None else (), key=str)
        principal = formText(form, 'principal')
        self.principal = principal if principal in [
            self._value(p) for p in self.principalIds] else None
        action = formText(form, 'action')
        self.action = action if action in audit.ACTIONS else None
        start = formText(form, 'start', '0') or '0'
        self.start = int(start) if start.isascii() and start.isdigit() \
            and len(start) < 10 else 0

    @staticmethod
    def _value(principalId):
        return NOBODY if principalId is None else principalId

    def _filter(self):
        if self.principal is None:
            return audit.CURRENT
        return None if self.principal == NOBODY else self.principal

    def entries(self):
        """The entries of this page, as text, and whether more follow."""
        if self.log is None:
            return [], False
        found = self.log.entries(self._filter(), self.action)
        page = list(itertools.islice(found, self.start, self.start + PAGE + 1))
        return [self._row(entry) for entry in page[:PAGE]], len(page) > PAGE

    def _row(self, entry):
        jobs = ''
        if entry.count is not None:
            jobs = str(entry.count)
            if entry.jobids:
                more = ', ...' if entry.count > len(entry.jobids) else ''
                jobs += f": {', '.join(map(str, entry.jobids))}{more}"
        return {'when': formatDate(entry.when),
                'principal': self.principalLabel(entry.principal),
                'action': entry.action,
                'jobs': jobs,
                'detail': entry.detail or ''}

    def principalLabel(self, principalId):
        """The principal's title and id (the id alone when unknown)."""
        if principalId is None:
            return NOBODY_LABEL
        principal = lookup(removeSecurityProxy(self.context), principalId)
        title = getattr(principal, 'title', None)
        if not title or title == principalId:
            return principalId
        return f'{title} ({principalId})'

    def principalOptions(self):
        return [{'value': self._value(p), 'label': self.principalLabel(p),
                 'selected': self._value(p) == self.principal}
                for p in self.principalIds]

    def actionOptions(self):
        return [{'value': a, 'selected': a == self.action}
                for a in audit.ACTIONS]

    def url(self, start):
        query = [(name, value) for name, value in (
            ('principal', self.principal), ('action', self.action),
            ('start', start or None)) if value is not None]
        base = f'{absoluteURL(self.context, self.request)}/@@audit.html'
        return f'{base}?{urlencode(query)}' if query else base

    def newerURL(self):
        return self.url(max(self.start - PAGE, 0)) if self.start else None

    def olderURL(self, more):
        return self.url(self.start + PAGE) if more else None
