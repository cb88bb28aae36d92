"""The forms that add a cron job to a service and edit one.

Both take the task and the five schedule fields as text (see schedule.py:
``*`` selects every value; the day of the week counts 0 = Monday to
6 = Sunday, Python's ``weekday()``) and an optional delay in seconds (a
job with a delay runs once, that long after it is scheduled).  The fields
show the schedule as it runs: ``hour=(3,)`` shows minute 0 (see
``schedule.toForm`` and ``fromForm``).  The add form also takes the job's
input, as a Python literal (``{'foo': 'bar'}``, ``42``, ``'text'``).
They act on POST requests only, and refuse a POST from a page of another
site (403, see util.py).  A field sent twice or converted
(``minute=1&minute=2``, ``minute:int=1``) is an error of that field.

Editing keeps the job's input.  A changed schedule is applied to the job
in place (``ICronJob.update`` and ``ITaskService.reschedule``).  A
changed task makes a new cron job with the same input and schedule, and
the old one is cancelled: a job's task never changes under it.  The task
can be changed only while the job waits for its next run (``cronjob`` or
``delayed``): a new job would bring a cancelled or finished one back to
life.
"""
import ast

import transaction
from zope.browserpage import ViewPageTemplateFile
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL

from lovely.remotetask.browser.schedule import FIELDS
from lovely.remotetask.browser.schedule import fromForm
from lovely.remotetask.browser.schedule import parseField
from lovely.remotetask.browser.schedule import toForm
from lovely.remotetask.browser.util import refuseCrossOrigin
from lovely.remotetask.browser.util import formatDate
from lovely.remotetask.browser.util import formText
from lovely.remotetask.interfaces import CRONJOB
from lovely.remotetask.interfaces import DELAYED
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
    'dayOfWeek': _('0-6: 0 is Monday, 6 is Sunday'),
}


def parseInput(text):
    """The job input a form's text stands for: a Python literal, or None
    for no text.

    >>> parseInput(" {'foo': 'bar'} "), parseInput(''), parseInput('42')
    ({'foo': 'bar'}, None, 42)
    >>> parseInput('foo')
    Traceback (most recent call last):
    ...
    ValueError: foo
    """
    text = text.strip()
    if not text:
        return None
    try:
        return ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise ValueError(text)


class CronJobForm(BrowserPage):
    """What the add and the edit form share: fields, parsing, errors."""

    template = ViewPageTemplateFile('cronjob.pt')
    title = None
    buttonName = None
    buttonLabel = None
    message = None
    #: Does the form take the job's input?
    takesInput = False

    def __call__(self):
        self.errors = {}
        refused = refuseCrossOrigin(self.request)
        if refused is not None:
            return refused
        if self.request.method == 'POST' and self.buttonName in \
                self.request.form:
            schedule = self.parse()
            if not self.errors:
                url = self.apply(**fromForm(schedule))
                if url is not None:
                    self.request.response.redirect(url)
                    return ''
        return self.template()

    def service(self):
        """The task service of the form."""
        raise NotImplementedError

    def defaults(self):
        """The field values shown when the form is not submitted."""
        raise NotImplementedError

    def apply(self, task, delay, **schedule):
        """Save the valid form; return the URL to go to, or None to show the
        form again (with ``message`` or ``errors`` set)."""
        raise NotImplementedError

    def taskNames(self):
        """The names of the tasks jobs can be added for, sorted."""
        return sorted(self.service().getAvailableTasks())

    def value(self, name):
        """The text of a field: as submitted, else the default."""
        if name in self.request.form:
            return formText(self.request.form, name) or ''
        return self.defaults()[name]

    def fields(self):
        """The schedule fields: name, label, hint, value and error."""
        return [{'name': name, 'label': LABELS[name], 'hint': HINTS[name],
                 'value': self.value(name), 'error': self.errors.get(name)}
                for name in FIELDS]

    def parse(self):
        """The submitted schedule as keyword arguments; ``errors`` for the
        fields that are wrong."""
        form = self.request.form
        result = {}
        task = formText(form, 'task')
        if task not in self.taskNames():
            self.errors['task'] = _('Choose one of the available tasks.')
        result['task'] = task
        for name in FIELDS:
            text = formText(form, name)
            if text is None:
                self.errors[name] = _('${field}: expected one text value',
                                      mapping={'field': name})
                continue
            try:
                result[name] = parseField(text, name)
            except InvalidSchedule as error:
                self.errors[name] = str(error)
        if self.takesInput:
            try:
                result['input'] = parseInput(formText(form, 'input') or '')
            except ValueError:
                self.errors['input'] = _(
                    'The input is a Python literal: text in quotes, a '
                    'number, a list or a dict, or nothing.')
        delay = formText(form, 'delay')
        try:
            if delay is None:
                raise ValueError('not text')
            delay = delay.strip()
            # The service checks the range (InvalidSchedule).
            result['delay'] = float(delay) if delay else None
            if delay and not 0 <= result['delay'] < float('inf'):
                raise ValueError(delay)
        except ValueError:
            self.errors['delay'] = _('The delay is a number of seconds.')
        return result

    def scheduleError(self, error):
        """Show an ``InvalidSchedule`` of the service: at the delay field
        if it is about the delay, else above the form."""
        message = str(error)
        field = 'delay' if message.startswith('delay:') else 'schedule'
        self.errors[field] = message


class AddCronJobForm(CronJobForm):
    """The "add cron" tab of a service."""

    title = _('Add a cron job')
    buttonName = 'ADD'
    buttonLabel = _('Add')
    takesInput = True

    def service(self):
        return self.context

    def defaults(self):
        values = dict.fromkeys(FIELDS, '*')
        values.update(task='', delay='', input='')
        return values

    def apply(self, task, delay, input=None, **schedule):
        try:
            jobid = self.context.addCronJob(task, input, delay=delay,
                                            **schedule)
        except InvalidSchedule as error:
            self.scheduleError(error)
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
        values = toForm(job)
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
            self.scheduleError(error)
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
        if job.status not in (CRONJOB, DELAYED):
            self.errors['task'] = _('The job is ${status}: its task cannot '
                                    'be changed any more.',
                                    mapping={'status': job.status})
            return None
        service = self.service()
        # The new job gets the very input (not the security proxy that
        # guards it here, which cannot be stored).
        input = removeSecurityProxy(job.input)
        try:
            jobid = service.addCronJob(task, input, delay=delay, **schedule)
        except InvalidSchedule as error:
            self.scheduleError(error)
            return None
        if not service.cancel(job.id):
            # Taken by a processor meanwhile: keep the job, add nothing.
            transaction.doom()
            self.errors['task'] = _('The job could not be cancelled (it '
                                    'runs or finished meanwhile); nothing '
                                    'was changed.')
            return None
        return absoluteURL(service[jobid], self.request)
