"""The forms that add a cron job to a service and edit one.

Both take the task and the five schedule fields as crontab-like text
(see schedule.py: ``*`` selects every value) and an optional delay in
seconds (a job with a delay runs once, that long after it is scheduled).
They act on POST requests only.

Editing keeps the job's input.  A changed schedule is applied to the job
in place (``ICronJob.update`` and ``ITaskService.reschedule``).  A
changed task makes a new cron job with the same input and schedule, and
the old one is cancelled: a job's task never changes under it.
"""
from zope.browserpage import ViewPageTemplateFile
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.schedule import FIELDS
from lovely.remotetask.browser.schedule import formatField
from lovely.remotetask.browser.schedule import parseField
from lovely.remotetask.browser.table import formatDate
from lovely.remotetask.interfaces import InvalidSchedule
from lovely.remotetask.interfaces import PROCESSING


_ = MessageFactory('lovely.remotetask')

LABELS = {
    'minute': _('Minute'),
    'hour': _('Hour'),
    'dayOfMonth': _('Day of month'),
    'month': _('Month'),
    'dayOfWeek': _('Day of week'),
}

HINTS = {
    'minute': _('0-59'),
    'hour': _('0-23'),
    'dayOfMonth': _('1-31'),
    'month': _('1-12'),
    'dayOfWeek': _('0-6, 0 is Monday'),
}


class CronJobForm(BrowserPage):
    """What the add and the edit form share: fields, parsing, errors."""

    template = ViewPageTemplateFile('cronjob.pt')
    title = None
    buttonName = None
    buttonLabel = None
    message = None

    def __call__(self):
        self.errors = {}
        if self.request.method == 'POST' and self.buttonName in \
                self.request.form:
            schedule = self.parse()
            if not self.errors:
                url = self.apply(**schedule)
                if url is not None:
                    self.request.response.redirect(url)
                    return ''
        return self.template()

    def service(self):
        raise NotImplementedError

    def defaults(self):
        """The field values shown when the form is not submitted."""
        raise NotImplementedError

    def apply(self, task, delay, **schedule):
        """Save valid input; return the URL to go to, or None to show the
        form again (with ``message`` or ``errors`` set)."""
        raise NotImplementedError

    def taskNames(self):
        return sorted(self.service().getAvailableTasks())

    def value(self, name):
        """The text of a field: as submitted, else the default."""
        if name in self.request.form:
            return self.request.form[name]
        return self.defaults()[name]

    def fields(self):
        return [{'name': name, 'label': LABELS[name], 'hint': HINTS[name],
                 'value': self.value(name), 'error': self.errors.get(name)}
                for name in FIELDS]

    def parse(self):
        """The submitted schedule as keyword arguments; ``errors`` for the
        fields that are wrong."""
        form = self.request.form
        result = {}
        task = form.get('task', '')
        if task not in self.taskNames():
            self.errors['task'] = _('Choose one of the available tasks.')
        result['task'] = task
        for name in FIELDS:
            try:
                result[name] = parseField(form.get(name, ''), name)
            except InvalidSchedule as error:
                self.errors[name] = str(error)
        delay = form.get('delay', '').strip()
        try:
            result['delay'] = float(delay) if delay else None
            if delay and not 0 <= result['delay'] < float('inf'):
                raise ValueError(delay)
        except ValueError:
            self.errors['delay'] = _('The delay is a number of seconds.')
        return result


class AddCronJobForm(CronJobForm):
    """The "add cron" tab of a service."""

    title = _('Add a cron job')
    buttonName = 'ADD'
    buttonLabel = _('Add')

    def service(self):
        return self.context

    def defaults(self):
        values = dict.fromkeys(FIELDS, '*')
        values.update(task='', delay='')
        return values

    def apply(self, task, delay, **schedule):
        try:
            jobid = self.context.addCronJob(task, delay=delay, **schedule)
        except InvalidSchedule as error:
            self.errors['schedule'] = str(error)
            return None
        return absoluteURL(self.context[jobid], self.request)


class EditCronJobForm(CronJobForm):
    """The "edit" tab of a cron job."""

    title = _('Edit the cron job')
    buttonName = 'SAVE'
    buttonLabel = _('Save')

    def service(self):
        return self.context.__parent__

    def defaults(self):
        job = self.context
        values = {name: formatField(getattr(job, name)) for name in FIELDS}
        values.update(task=job.task,
                      delay='' if job.delay is None else f'{job.delay:g}')
        return values

    def apply(self, task, delay, **schedule):
        job = self.context
        if task != job.task:
            return self.replace(task, delay, schedule)
        try:
            job.update(delay=delay, **schedule)
        except InvalidSchedule as error:
            self.errors['schedule'] = str(error)
            return None
        if self.service().reschedule(job.id):
            self.message = _('Saved: the next run is ${date}.',
                             mapping={'date': formatDate(job.scheduledFor)})
        else:
            self.message = _('Saved. The job is ${status}: the schedule '
                             'applies from its next run, if any.',
                             mapping={'status': job.status})
        return None

    def replace(self, task, delay, schedule):
        """A new cron job for the new task with this job's input; this
        one is cancelled."""
        job = self.context
        if job.status == PROCESSING:
            self.errors['task'] = _('The job is running now; change its '
                                    'task when the run has ended.')
            return None
        service = self.service()
        # The new job gets the very input (not the security proxy that
        # guards it here, which cannot be stored).
        input = removeSecurityProxy(job.input)
        try:
            jobid = service.addCronJob(task, input, delay=delay, **schedule)
        except InvalidSchedule as error:
            self.errors['schedule'] = str(error)
            return None
        service.cancel(job.id)
        return absoluteURL(service[jobid], self.request)
