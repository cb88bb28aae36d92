"""The jobs table of the ZMI (z3c.table), batched on the server.

A page of the table never loads more jobs than it shows: the rows come
from ``ITaskServiceRead.listJobs`` through a lazy sequence whose length is
``countJobs``, and z3c.batching pages over that sequence.  The order is
the service's: job ids, ascending or descending.  (Sorting by other
columns would mean loading every job; filter by status instead.)

A page costs the same wherever it is in a table of any size: the
Previous and Next links carry the cursor of the row next to them
(``jobs-after``, ``jobs-before``: see ``listJobs``), the last pages are
read backwards from the end, and only a jump to a page far from both
ends walks the index up to it.

The markup of a row is the original package's::

    <tr class="odd">
      <td class="">
        <input type="checkbox" name="jobs:list" value="42">
      </td>
      <td class="tableId">
        42
      </td>
      ...

The request chooses the page: ``jobs-batchSize`` (1 to 500 jobs; 50 when
it is missing, not a number or below 1) and ``jobs-batchStart``.  Values
that are not a number (a list, a record) are ignored.
"""
import html
from urllib.parse import urlencode

import zope.component
import zope.i18n
from z3c.batching.batch import Batch
from z3c.table import batch
from z3c.table import column
from z3c.table import table
from zope.i18nmessageid import MessageFactory
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.browser.util import statusClass


_ = MessageFactory('lovely.remotetask')

#: The most jobs a page of the table shows.
MAX_BATCH_SIZE = 500


def _integer(value):
    """A request value as an int; None if it is not a decimal number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.strip()
        if len(value) < 20:
            try:
                return int(value)
            except ValueError:
                pass
    return None


class JobSequence:
    """The jobs of a service (in one status, of one task) as a sequence.

    ``len()`` counts them; indexing and slicing load only the jobs asked
    for.
    """

    def __init__(self, service, status=None, task=None, reverse=False):
        self.service = service
        self.status = status
        self.task = task
        self.reverse = reverse
        self._length = service.countJobs(status=status, task=task)
        self.page = None     # (start, jobs) found by a cursor

    def __len__(self):
        return self._length

    def list(self, start=0, size=None, reverse=False, **after):
        return self.service.listJobs(
            status=self.status, task=self.task, start=start, size=size,
            reverse=self.reverse != reverse, **after)

    def _list(self, start, size):
        if self.page is not None and self.page[0] == start:
            return self.page[1][:size]
        end = self._length - start
        if end < start:
            # Nearer the end: read backwards from there.
            return self.list(max(end - size, 0), min(size, end),
                             reverse=True)[::-1]
        return self.list(start, size)

    def cursor(self, job):
        return self.service.cursor(job, self.status, self.task)

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.indices(self._length)
            if step != 1:
                raise ValueError('extended slicing is not supported')
            return self._list(start, stop - start) if stop > start else []
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        return self._list(index, 1)[0]


class JobsTable(table.Table):
    """The jobs of a service, one page at a time.

    The request chooses the page (``jobs-batchStart``, ``jobs-batchSize``)
    and the order (``jobs-sortOrder=descending``); the view chooses the
    filter (``status``, ``task``) and whether jobs can be selected (the
    checkboxes of the Cancel button).
    """

    prefix = 'jobs'
    cssClasses = {'table': 'listing jobs'}
    cssClassSortedOn = None  # the order is the service's: ids
    batchSize = 50
    batchProviderName = 'jobs-batch'
    __name__ = '@@jobs.html'

    def __init__(self, context, request, status=None, task=None,
                 selectable=True):
        super().__init__(context, request)
        self.status = status
        self.task = task
        self.selectable = selectable
        self.batch = None
        self.jobs = None

    def getBatchSize(self):
        """The page size the request asks for, from 1 to 500."""
        size = _integer(self.request.get(self.prefix + '-batchSize'))
        if size is None or size < 1:
            return type(self).batchSize
        return min(size, MAX_BATCH_SIZE)

    def getBatchStart(self):
        """The index of the first job of the page; 0 when not a number."""
        start = _integer(self.request.get(self.prefix + '-batchStart'))
        return max(start or 0, 0)

    def getSortOrder(self):
        """``descending`` if the request asks for it, else ascending."""
        order = self.request.get(self.prefix + '-sortOrder')
        return order if isinstance(order, str) else self.sortOrder

    @property
    def reverse(self):
        return self.getSortOrder() in self.reverseSortOrderNames

    def url(self, **changes):
        """The URL of this page (filters, order, batch size) with
        ``changes`` to its query; a value of None drops a parameter."""
        args = {'status': self.status, 'task': self.task,
                self.prefix + '-batchSize':
                    self.batchSize if self.batchSize != type(self).batchSize
                    else None,
                self.prefix + '-sortOrder':
                    'descending' if self.reverse else None}
        args.update(changes)
        query = urlencode(sorted((k, v) for k, v in args.items()
                                 if v is not None))
        url = self.serviceURL
        return f'{url}?{query}' if query else url

    @property
    def serviceURL(self):
        """The service's URL, computed once per table (it is in every
        link, and in every row's link to its job)."""
        if self._serviceURL is None:
            self._serviceURL = absoluteURL(self.context, self.request)
        return self._serviceURL

    _serviceURL = None

    def setUpColumns(self):
        select = [column.addColumn(self, SelectColumn, 'select', weight=0)]
        return (select if self.selectable else []) + [
            column.addColumn(self, IdColumn, 'id', weight=10),
            column.addColumn(self, TaskColumn, 'task', weight=20),
            column.addColumn(self, StatusColumn, 'status', weight=30),
            column.addColumn(self, DetailColumn, 'detail', weight=40),
            column.addColumn(self, CreatedColumn, 'created', weight=50),
            column.addColumn(self, StartColumn, 'start', weight=60),
            column.addColumn(self, EndColumn, 'end', weight=70),
        ]

    def setUpRows(self):
        """The rows of the current page only."""
        jobs = JobSequence(self.context, self.status, self.task,
                           self.reverse)
        if not len(jobs):
            return []
        start = self.batchStart
        if start >= len(jobs):
            # Past the end (jobs were removed meanwhile): the last page.
            start = (len(jobs) - 1) // self.batchSize * self.batchSize
        else:
            self.findPage(jobs, start)
        self.batch = Batch(jobs, start=start, size=self.batchSize)
        self.jobs = jobs
        return [self.setUpRow(job) for job in self.batch]

    def findPage(self, jobs, start):
        """The page by the cursor of the request, if it has one."""
        after = _integer(self.request.get(self.prefix + '-after'))
        before = _integer(self.request.get(self.prefix + '-before'))
        size = self.batchSize
        if after is not None:
            page = jobs.list(size=size, after=after)
        elif before is not None:
            page = jobs.list(size=size, reverse=True, after=before)[::-1]
            if len(page) < size:
                return    # the first page: by its offset, 0
        else:
            return
        if page:
            jobs.page = (start, page)

    def sortRows(self):
        """The rows come sorted from the service."""

    def batchRows(self):
        """The rows are batched when they are set up."""

    def updateBatch(self):
        if self.batch is not None and self.batch.total > 1:
            self.batchProvider = zope.component.getMultiAdapter(
                (self.context, self.request, self), name=self.batchProviderName)
            self.batchProvider.update()

    def renderRows(self):
        return ''.join(self.renderRow(row, 'odd' if number % 2 else 'even')
                       for number, row in enumerate(self.rows, 1))

    def renderRow(self, row, cssClass=None):
        cells = ''.join(self.renderCell(item, col, colspan)
                        for item, col, colspan in row)
        return f'\n<tr class="{cssClass}">{cells}\n</tr>'

    def renderCell(self, item, column, colspan=0):
        css = html.escape(column.cssClasses.get('td', ''))
        return (f'\n  <td class="{css}">\n    {column.renderCell(item)}'
                f'\n  </td>')

    def renderBody(self):
        return f'\n<tbody>{self.renderRows()}\n</tbody>'


class JobColumn(column.Column):
    """A column of the jobs table: a translated header, a CSS class."""

    cssClass = ''

    @property
    def cssClasses(self):
        return {'td': self.cssClass, 'th': self.cssClass}


class SelectColumn(JobColumn):
    """The checkbox that selects a job for the Cancel button."""

    def renderCell(self, job):
        return f'<input type="checkbox" name="jobs:list" value="{job.id}">'


class IdColumn(JobColumn):
    """The job id; its header changes the order (ascending, descending)."""

    header = _('Id')
    cssClass = 'tableId'

    def renderHeadCell(self):
        reverse = self.table.reverse
        url = self.table.url(**{
            self.table.prefix + '-sortOrder': None if reverse else 'descending',
            self.table.prefix + '-batchStart': None})
        title = zope.i18n.translate(
            _('Sort by id, ascending') if reverse else
            _('Sort by id, descending'), context=self.request)
        arrow = '&#9660;' if reverse else '&#9650;'
        return (f'<a href="{html.escape(url)}" title="{html.escape(title)}">'
                f'{super().renderHeadCell()} {arrow}</a>')

    def renderCell(self, job):
        return str(job.id)


class TaskColumn(JobColumn):
    """The task name."""

    header = _('Task')
    cssClass = 'tableTask'

    def renderCell(self, job):
        return html.escape(job.task)


class StatusColumn(JobColumn):
    """The status, marked up for styling."""

    header = _('Status')
    cssClass = 'tableStatus'

    def renderCell(self, job):
        return (f'<span class="{html.escape(statusClass(job.status))}">'
                f'{html.escape(job.status)}</span>')


class DetailColumn(JobColumn):
    """A view of the job: ``TASKNAME_detail``, else ``detail``.

    Applications register such views to show what a job is about (its
    input, say).  The view renders markup: it escapes what it shows.
    """

    header = _('Detail')
    cssClass = 'tableDetail'

    def renderCell(self, job):
        for name in (job.task + '_detail', 'detail'):
            view = zope.component.queryMultiAdapter(
                (job, self.request), name=name)
            if view is not None:
                return view()
        return zope.i18n.translate(_('No input detail available'),
                                   context=self.request)


class CreatedColumn(JobColumn):
    """When the job was created: the link to the job's page."""

    header = _('Created')
    cssClass = 'tableCreated'

    def renderCell(self, job):
        # A job's __name__ is its id: no walk up to the root per row.
        url = f'{self.table.serviceURL}/{job.id}'
        return (f'<a href="{html.escape(url)}">'
                f'{html.escape(formatDate(job.created))}</a>')


class StartColumn(JobColumn):
    """When the job's last run started."""

    header = _('Start')
    cssClass = 'tableStart'

    def renderCell(self, job):
        return html.escape(formatDate(job.started))


class EndColumn(JobColumn):
    """When the job completed (or failed for good)."""

    header = _('End')
    cssClass = 'tableEnd'

    def renderCell(self, job):
        return html.escape(formatDate(job.completed))


class JobsBatchProvider(batch.BatchProvider):
    """Page links: Previous, the pages around the current one, Next.

    Every link keeps the filters and the order of the table.
    """

    def __init__(self, context, request, table):
        self.__parent__ = context
        self.context = context
        self.request = request
        self.table = table
        self.batch = table.batch
        self.batches = table.batch.batches

    def renderBatchLink(self, batch, cssClass=None, label=None, cursor=None):
        prefix = self.table.prefix
        url = self.table.url(**{prefix + '-batchStart': batch.start or None,
                                **(cursor or {})})
        css = f' class="{cssClass}"' if cssClass else ''
        text = label or str(batch.index + 1)
        return f'<a href="{html.escape(url)}"{css}>{text}</a>'

    def render(self):
        links = [super().render()]
        translate = zope.i18n.translate
        rows = self.table.rows
        jobs, prefix = self.table.jobs, self.table.prefix
        if self.batch.previous is not None:
            links.insert(0, self.renderBatchLink(
                self.batch.previous, 'previous',
                html.escape(translate(_('Previous'), context=self.request)),
                {prefix + '-before': jobs.cursor(rows[0][0][0])}))
        if self.batch.next is not None:
            links.append(self.renderBatchLink(
                self.batch.next, 'next',
                html.escape(translate(_('Next'), context=self.request)),
                {prefix + '-after': jobs.cursor(rows[-1][0][0])}))
        return '\n'.join(links)
