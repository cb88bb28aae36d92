"""The jobs table of the ZMI (z3c.table), batched on the server.

A page of the table never loads more jobs than it shows: the rows come
from ``ITaskServiceRead.listJobs`` through a lazy sequence whose length is
``countJobs``, and z3c.batching pages over that sequence.  The order is
one of the service's sorts (sorting.py): by created (the newest first,
the default), started, completed, duration, status or task, ascending or
descending; or by id; or, filtered by status, by the time the jobs
entered it (the newest first, the default then: the status index itself,
which no other sort filtered by status walks as cheaply).  The headers of
those columns are the sort links (``jobs-sortOn``, ``jobs-sortOrder``).

A page costs the same wherever it is in a table of any size: the
Previous and Next links carry the cursor of the row next to them
(``jobs-after``, ``jobs-before``: see ``listJobs``), so do the links to
the pages around the current one, with the rows to skip from there
(``jobs-skip``), and the current page's own link and the form of its
buttons keep the cursor the page was found by; the last pages are read
backwards from the end.  Only a page asked for by its offset alone
(``jobs-batchStart``, a link made by hand) far from both ends walks the
index up to it.

The markup of a row is the original package's::

    <tr class="odd">
      <td class="">
        <input type="checkbox" name="jobs:list" value="42">
      </td>
      <td class="tableId">
        42
      </td>
      ...

A cell is made of nodes (see util.py): ``renderRows`` is their markup,
``rowData`` the same as data for ``jobs.json``, from which jobs.js
builds the rows of the live refresh with DOM calls.

The request chooses the page: ``jobs-batchSize`` (1 to 500 jobs; 50 when
it is missing, not a number or below 1) and ``jobs-batchStart``.  Values
that are not a number (a list, a record) are ignored.  The view chooses
the filters (status, task, a time range of creation).
"""
import html
import reprlib
from urllib.parse import urlencode

import zope.component
import zope.i18n
from z3c.batching.batch import Batch
from z3c.table import batch
from z3c.table import column
from z3c.table import table
from zope.i18nmessageid import MessageFactory
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.jobstate import progressOf
from lovely.remotetask.browser.jobstate import queueOf
from lovely.remotetask.browser.util import NOT_SET
from lovely.remotetask.browser.util import element
from lovely.remotetask.browser.util import encodable
from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.browser.util import jsonNodes
from lovely.remotetask.browser.util import renderNodes
from lovely.remotetask.browser.util import statusClass


_ = MessageFactory('lovely.remotetask')

#: The most jobs a page of the table shows.
MAX_BATCH_SIZE = 500
#: The sorts of the table (``jobs-sortOn``): the service's sort for each
#: (None: the service's own order, by id or, filtered by status, by the
#: time the jobs entered it).
SORTS = {'id': None, 'entered': None, 'created': 'created',
         'started': 'started', 'completed': 'completed',
         'duration': 'duration', 'status': 'status', 'task': 'task'}
#: The sorts that list descending unless the request says otherwise.
DESCENDING = ('entered', 'created', 'started', 'completed', 'duration')
#: The most characters of a summary (input, error) in a cell.
SUMMARY = 80
#: The most characters of a progress message in a cell.
PROGRESS = 60


#: The most digits of a cursor: ``segment << 64 | key`` for the sorted
#: lists (see sorting.py) is above 2**64, 20 digits and more.
CURSOR_DIGITS = 30


def _integer(value, digits=19):
    """A request value as an int; None if it is not a decimal number of
    at most ``digits`` digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        value = value.strip()
        if len(value) <= digits:
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

    def __init__(self, service, status=None, task=None, reverse=False,
                 sort=None, createdAfter=None, createdBefore=None):
        self.service = service
        self.status = status
        self.task = task
        self.reverse = reverse
        self.sort = sort
        self.created = {'createdAfter': createdAfter,
                        'createdBefore': createdBefore}
        self._length = service.countJobs(status=status, task=task,
                                         **self.created)
        self.page = None     # (start, jobs) found by a cursor

    def __len__(self):
        return self._length

    def list(self, start=0, size=None, backwards=False, **after):
        """``listJobs`` of this sequence; ``backwards`` from its end."""
        return self.service.listJobs(
            status=self.status, task=self.task, start=start, size=size,
            reverse=self.reverse, sort=self.sort, backwards=backwards,
            **self.created, **after)

    def _list(self, start, size):
        if self.page is not None and self.page[0] == start:
            return self.page[1][:size]
        end = self._length - start
        if end < start:
            # Nearer the end: read backwards from there.
            return self.list(max(end - size, 0), min(size, end),
                             backwards=True)[::-1]
        return self.list(start, size)

    def cursor(self, job):
        sort = self.sort
        if sort is None and any(self.created.values()):
            sort = 'created'     # listJobs's order with a time range
        return self.service.cursor(job, self.status, self.task, sort=sort)

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
    and the order (``jobs-sortOn``, ``jobs-sortOrder``); the view chooses
    the filter (``status``, ``task``, ``created``: a time range, as
    ``{'createdAfter', 'createdBefore'}`` and their text for the links)
    and whether jobs can be selected (the checkboxes of the buttons).
    """

    prefix = 'jobs'
    cssClasses = {'table': 'listing jobs'}
    cssClassSortedOn = None  # the header links mark the order
    batchSize = 50
    batchProviderName = 'jobs-batch'
    __name__ = '@@jobs.html'

    def __init__(self, context, request, status=None, task=None,
                 selectable=True, created=None, createdQuery=None):
        super().__init__(context, request)
        self.status = status
        self.task = task
        self.created = created or {}
        self.createdQuery = createdQuery or {}
        self.selectable = selectable
        self.batch = None
        self.jobs = None
        #: The query that found the page by a cursor (``findPage``).
        self.pageCursor = {}

    @property
    def defaultSort(self):
        return 'entered' if self.status is not None else 'created'

    @property
    def sortName(self):
        """The column the table is sorted on (a key of ``SORTS``)."""
        sortOn = self.request.get(self.prefix + '-sortOn')
        if not isinstance(sortOn, str) or sortOn not in SORTS or (
                sortOn == 'entered' and self.status is None):
            return self.defaultSort
        return sortOn

    def defaultOrder(self, sortOn):
        return 'descending' if sortOn in DESCENDING else 'ascending'

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
        """``ascending`` or ``descending``: as the request asks, else the
        sort's default (descending for times)."""
        order = self.request.get(self.prefix + '-sortOrder')
        if order in ('ascending', 'descending'):
            return order
        return self.defaultOrder(self.sortName)

    @property
    def reverse(self):
        return self.getSortOrder() in self.reverseSortOrderNames

    def url(self, **changes):
        """The URL of this page (filters, order, batch size) with
        ``changes`` to its query; a value of None drops a parameter."""
        # Another status filter has its own default order.
        refilter = 'status' in changes and changes['status'] != self.status
        sortOn = changes.pop('sortOn', None if refilter else self.sortName)
        order = changes.pop('sortOrder',
                            None if refilter else self.getSortOrder())
        status = changes.get('status', self.status)
        default = 'entered' if status is not None else 'created'
        sortOn = sortOn or default
        args = {'status': self.status, 'task': self.task,
                **self.createdQuery,
                self.prefix + '-batchSize':
                    self.batchSize if self.batchSize != type(self).batchSize
                    else None,
                self.prefix + '-sortOn':
                    None if sortOn == default else sortOn,
                self.prefix + '-sortOrder':
                    None if order in (None, self.defaultOrder(sortOn))
                    else order}
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
            column.addColumn(self, factory, name, weight=weight)
            for weight, (name, factory) in enumerate((
                ('id', IdColumn), ('task', TaskColumn),
                ('status', StatusColumn), ('progress', ProgressColumn),
                ('queue', QueueColumn), ('attempts', AttemptsColumn),
                ('created', CreatedColumn), ('start', StartColumn),
                ('end', EndColumn), ('duration', DurationColumn),
                ('worker', WorkerColumn), ('detail', DetailColumn),
                ('error', ErrorColumn)), 1)]

    def setUpRows(self):
        """The rows of the current page only."""
        jobs = JobSequence(self.context, self.status, self.task,
                           self.reverse, SORTS[self.sortName], **self.created)
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
        prefix = self.prefix
        after = _integer(self.request.get(prefix + '-after'), CURSOR_DIGITS)
        before = _integer(self.request.get(prefix + '-before'),
                          CURSOR_DIGITS)
        # Rows between the cursor and the page (a link to a page around
        # the one that made it).
        skip = max(_integer(self.request.get(prefix + '-skip')) or 0, 0)
        size = self.batchSize
        if start == 0 or skip >= len(jobs):
            # The first page is cheap by its offset, and shows the jobs
            # added since; a skip that long is no link of this table.
            return
        try:
            if after is not None:
                page = jobs.list(start=skip, size=size, after=after)
                cursor = {prefix + '-after': after}
            elif before is not None:
                page = jobs.list(start=skip, size=size, backwards=True,
                                 after=before)[::-1]
                if len(page) < size:
                    return    # the first page: by its offset, 0
                cursor = {prefix + '-before': before}
            else:
                return
        except (TypeError, ValueError):
            # Not a cursor of this list (another order, another filter,
            # made by hand): the page by its offset.
            return
        if page:
            jobs.page = (start, page)
            self.pageCursor = {**cursor, prefix + '-skip': skip or None}

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
        return ''.join(self.renderRow(row, rowClass(number))
                       for number, row in enumerate(self.rows, 1))

    def rowData(self):
        """The rows as data (``jobs.json``): ``{'id', 'status', 'class',
        'cells'}``, each cell ``{'class', 'nodes'}`` (see util.py)."""
        return [{'id': row[0][0].id, 'status': row[0][0].status,
                 'class': rowClass(number),
                 'cells': [{'class': col.cssClasses.get('td', ''),
                            'nodes': jsonNodes(col.cellNodes(item))}
                           for item, col, colspan in row]}
                for number, row in enumerate(self.rows, 1)]

    def renderRow(self, row, cssClass=None):
        cells = ''.join(self.renderCell(item, col, colspan)
                        for item, col, colspan in row)
        return f'\n<tr class="{cssClass}">{cells}\n</tr>'

    def renderCell(self, item, column, colspan=0):
        css = html.escape(column.cssClasses.get('td', ''))
        content = column.renderCell(item)
        if not content:
            return f'\n  <td class="{css}"></td>'
        return f'\n  <td class="{css}">\n    {content}\n  </td>'

    def renderTable(self):
        """The table; without rows, hidden (the live refresh fills it)."""
        rendered = super().renderTable()
        if not self.rows:
            rendered = rendered.replace('<table', '<table hidden="hidden"', 1)
        return rendered

    def renderBody(self):
        return f'\n<tbody>{self.renderRows()}\n</tbody>'


def rowClass(number):
    """The CSS class of the row ``number`` (from 1)."""
    return 'odd' if number % 2 else 'even'


class JobColumn(column.Column):
    """A column of the jobs table: a translated header, a CSS class; a
    column with a ``sortOn`` has a header that sorts the table by it.

    A column says what a cell shows as nodes (``cellNodes``, see
    util.py); ``renderCell`` is their markup.
    """

    cssClass = ''
    sortOn = None

    def cellNodes(self, job):
        """What the cell of ``job`` shows: a list of nodes."""
        return []

    def renderCell(self, job):
        return renderNodes(self.cellNodes(job))

    @property
    def cssClasses(self):
        return {'td': self.cssClass, 'th': self.cssClass}

    def renderHeadCell(self):
        header = super().renderHeadCell()
        table = self.table
        sortOn = self.sortOn
        if sortOn == 'id' and table.status is not None:
            sortOn = None   # filtered by status, there is no id order
        if sortOn is None:
            return header
        # Filtered by status, its order is the one the jobs entered it.
        current = table.sortName == sortOn or (
            sortOn == 'status' and table.sortName == 'entered')
        order = table.defaultOrder(sortOn)
        if current:
            order = 'ascending' if table.reverse else 'descending'
        url = table.url(sortOn=sortOn, sortOrder=order, **{
            table.prefix + '-batchStart': None})
        title = zope.i18n.translate(
            _('Sort by ${column}, ${order}',
              mapping={'column': zope.i18n.translate(self.header,
                                                     context=self.request),
                       'order': order}), context=self.request)
        arrow = ''
        if current:
            arrow = ' &#9660;' if table.reverse else ' &#9650;'
        css = ' class="sortedOn"' if current else ''
        return (f'<a href="{html.escape(url)}" title="{html.escape(title)}"'
                f'{css}>{header}{arrow}</a>')


class SelectColumn(JobColumn):
    """The checkbox that selects a job for the buttons."""

    def cellNodes(self, job):
        return [element('input', attrs={'type': 'checkbox',
                                        'name': 'jobs:list',
                                        'value': job.id})]


class IdColumn(JobColumn):
    """The job id: the link to the job's page."""

    header = _('Id')
    cssClass = 'tableId'
    sortOn = 'id'

    def cellNodes(self, job):
        # A job's __name__ is its id: no walk up to the root per row.
        url = f'{self.table.serviceURL}/{job.id}'
        return [element('a', job.id, {'href': url})]


class TaskColumn(JobColumn):
    """The task name."""

    header = _('Task')
    cssClass = 'tableTask'
    sortOn = 'task'

    def cellNodes(self, job):
        return [job.task]


class StatusColumn(JobColumn):
    """The status, marked up for styling."""

    header = _('Status')
    cssClass = 'tableStatus'
    sortOn = 'status'

    def cellNodes(self, job):
        return [element('span', job.status,
                        {'class': statusClass(job.status)})]


class ProgressColumn(JobColumn):
    """How far a running job got: the percent and the message its task
    last reported (see jobstate.py)."""

    header = _('Progress')
    cssClass = 'tableProgress'

    def cellNodes(self, job):
        report = progressOf(self.table.context, job)
        if report is None:
            return []
        translate = zope.i18n.translate
        message = report['message']
        # A report may give a fraction, a message, both or neither.
        shown = ' '.join(filter(None, (
            report['percent'], message and summary(message, PROGRESS))))
        shown = shown or translate(_('reported'), context=self.request)
        if message:
            title = _('${message} (reported ${updated})',
                      mapping={'message': message[:2000],
                               'updated': report['updated']})
        else:
            title = _('reported ${updated}',
                      mapping={'updated': report['updated']})
        title = translate(title, context=self.request)
        return [element('span', shown, {'class': 'progress',
                                        'title': title})]


class QueueColumn(JobColumn):
    """The job control of a job: its priority (unless the default), its
    unique key, how many jobs a waiting job waits for, why the limits of
    its task hold a queued job back (see jobstate.py)."""

    header = _('Queue')
    cssClass = 'tableQueue'

    def cellNodes(self, job):
        nodes = []
        for kind, text, title in queueOf(self.table.context, job,
                                         self.request):
            if nodes:
                nodes.append(', ')
            nodes.append(element('span', text, {'class': 'queue-' + kind,
                                                'title': title}))
        return nodes


class AttemptsColumn(JobColumn):
    """How many times the job was started."""

    header = _('Attempts')
    cssClass = 'tableAttempts'

    def cellNodes(self, job):
        return [str(job.attempts)]


def summary(value, size=SUMMARY):
    """A value in one line of at most ``size`` characters ('' for None).

    >>> summary({'n': 1, 'text': 'two words'})
    "{'n': 1, 'text': 'two words'}"
    >>> summary('a  text\\non lines'), summary(None)
    ('a text on lines', '')
    >>> len(summary('x' * 100)), summary('x' * 100)[-1]
    (80, '\u2026')
    >>> summary(list(range(1000)))
    '[0, 1, 2, 3, 4, 5, ...]'
    """
    if value is None:
        return ''
    if isinstance(value, str):
        text = ' '.join(value.split())
    else:
        short = reprlib.Repr()
        short.maxlevel = 2
        short.maxstring = short.maxother = size
        try:
            text = short.repr(value)
        except Exception:
            text = object.__repr__(value)
        text = ' '.join(text.split())
    text = encodable(text)
    return text if len(text) <= size else text[:size - 1] + '\u2026'


class DetailColumn(JobColumn):
    """What the job is about: a view of the job ``TASKNAME_detail``, else
    ``detail`` (an application's, or a cron job's schedule), else a
    summary of the input in one line.

    Applications register such views to show what a job is about.  The
    view renders markup: it escapes what it shows.  The live refresh
    shows the text of that markup (see util.py); a view with a
    ``nodes()`` method (the cron jobs' schedule) gives its nodes instead.
    """

    header = _('Input')
    cssClass = 'tableDetail'

    def cellNodes(self, job):
        from lovely.remotetask.browser.job import JobDetail
        for name in (job.task + '_detail', 'detail'):
            view = zope.component.queryMultiAdapter(
                (job, self.request), name=name)
            if view is not None and not isinstance(view, JobDetail):
                nodes = getattr(view, 'nodes', None)
                if nodes is not None:
                    return nodes()
                return [{'markup': view()}]
        return [summary(job.input)]


class ErrorColumn(JobColumn):
    """The job's error in one line (the whole message as its title)."""

    header = _('Error')
    cssClass = 'tableError'

    def cellNodes(self, job):
        if not job.error:
            return []
        error = str(job.error)
        return [element('span', summary(error), {'title': error[:2000]})]


class DateColumn(JobColumn):
    attribute = None

    def cellNodes(self, job):
        return [formatDate(getattr(job, self.attribute))]


class CreatedColumn(DateColumn):
    """When the job was created."""

    header = _('Created')
    cssClass = 'tableCreated'
    sortOn = 'created'
    attribute = 'created'


class StartColumn(DateColumn):
    """When the job's last run started."""

    header = _('Started')
    cssClass = 'tableStart'
    sortOn = 'started'
    attribute = 'started'


class EndColumn(DateColumn):
    """When the job completed (or failed for good)."""

    header = _('Completed')
    cssClass = 'tableEnd'
    sortOn = 'completed'
    attribute = 'completed'


def formatDuration(job):
    """How long the job's last run took (or runs, if it is running)."""
    if job.started is None or job.completed is None \
            or job.completed < job.started:
        return NOT_SET if job.status != 'processing' else '…'
    seconds = (job.completed - job.started).total_seconds()
    if seconds < 60:
        return f'{seconds:.1f} s'
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}:{minutes:02d}:{seconds:02d}'


class DurationColumn(JobColumn):
    """How long the job's last run took."""

    header = _('Duration')
    cssClass = 'tableDuration'
    sortOn = 'duration'

    def cellNodes(self, job):
        return [formatDuration(job)]


class WorkerColumn(JobColumn):
    """The worker that ran (or runs) the job."""

    header = _('Worker')
    cssClass = 'tableWorker'

    def cellNodes(self, job):
        return [job.worker] if job.worker else []


class JobsBatchProvider(batch.BatchProvider):
    """Page links: Previous, the pages around the current one, Next.

    Every link keeps the filters and the order of the table.  The links
    but the first and the last page's carry a cursor (see the module
    doc), so that none of them walks the table up to its page.
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
        if cursor is None:
            cursor = self.cursorTo(batch)
        url = self.table.url(**{prefix + '-batchStart': batch.start or None,
                                **cursor})
        css = f' class="{cssClass}"' if cssClass else ''
        text = label or str(batch.index + 1)
        return f'<a href="{html.escape(url)}"{css}>{text}</a>'

    def cursorTo(self, batch):
        """The query of a cursor that finds ``batch`` from the current
        page: after its last row or before its first, skipping the rows
        between; none for the first and the last page (cheap by their
        offset) or when the page has no rows."""
        current, rows = self.batch, self.table.rows
        if batch.index == current.index:
            return self.table.pageCursor
        if not rows or batch.index in (0, current.total - 1):
            return {}
        prefix, jobs = self.table.prefix, self.table.jobs
        if batch.index > current.index:
            skip = batch.start - current.start - len(rows)
            cursor = {prefix + '-after': jobs.cursor(rows[-1][0][0])}
        else:
            skip = current.start - batch.start - batch.size
            cursor = {prefix + '-before': jobs.cursor(rows[0][0][0])}
        if skip < 0:
            return {}    # pages not on the size's boundaries: by offset
        return {**cursor, prefix + '-skip': skip or None}

    def render(self):
        links = [super().render()]
        translate = zope.i18n.translate
        rows = self.table.rows
        if not rows:
            return links[0]
        if self.batch.previous is not None:
            links.insert(0, self.renderBatchLink(
                self.batch.previous, 'previous',
                html.escape(translate(_('Previous'), context=self.request))))
        if self.batch.next is not None:
            links.append(self.renderBatchLink(
                self.batch.next, 'next',
                html.escape(translate(_('Next'), context=self.request))))
        return '\n'.join(links)
