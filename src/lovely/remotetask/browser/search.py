"""The search of the Jobs tab: filters read from the request, a time
range of creation, and the jump to a job by its id.

The search is a GET form: a job id goes to the job's page; status, task
and a time range of creation (``createdAfter``, ``createdBefore``: UTC,
``YYYY-MM-DD HH:MM[:SS]`` or the ``T`` form of a browser's date field)
filter the table.  The buttons post to the page's URL with the filters in
its query, which the publisher does not read for a POST: ``_param``
reads it there.
"""
import datetime
from urllib.parse import parse_qsl

from zope.i18nmessageid import MessageFactory
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL


_ = MessageFactory('lovely.remotetask')

#: The time formats of the search's time range (UTC).
TIME_FORMATS = ('%Y-%m-%dT%H:%M:%S', '%Y-%m-%dT%H:%M', '%Y-%m-%d %H:%M:%S',
                '%Y-%m-%d %H:%M', '%Y-%m-%d')


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


def _number(value):
    """A submitted job id or count as an int; None if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.strip()
        if value.isascii() and value.isdigit() and len(value) < 20:
            return int(value)
    return None


class SearchMixin:
    """The filters of the Jobs tab (a part of ``JobsView``)."""

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
