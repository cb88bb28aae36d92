"""The Limits tab of a task service: each task's limits, and retention.

For every task it shows the limits in force (see tasklimits.py and
retention.py) and where they come from (the task utility, or this
service's override), how many of its jobs run under its cap and how
many its limits hold back.  Its forms override a task's limits for
this service, or go back to the task's own, and set the service's
retention.  They act on POST requests only, from this site, with
``lovely.remotetask.Manage`` (as the buttons of the Jobs tab; see
jobs.py), then redirect to the page.

In a field, nothing means "as the task says", ``none`` means "no limit,
whatever the task says".
"""
from zope.browserpage import ViewPageTemplateFile
from zope.i18nmessageid import MessageFactory
from zope.publisher.browser import BrowserPage
from zope.security import checkPermission
from zope.security.interfaces import Unauthorized
from zope.security.proxy import removeSecurityProxy
from zope.traversing.browser import absoluteURL

from lovely.remotetask import timeset
from lovely.remotetask.browser.util import formText
from lovely.remotetask.browser.util import refuseCrossOrigin
from lovely.remotetask.interfaces import MANAGE
from lovely.remotetask.retention import formatRetention


_ = MessageFactory('lovely.remotetask')

NONE = 'none'
MESSAGES = {
    'saved': _('The limits of the task were saved.'),
    'reset': _('The task follows its own limits again.'),
    'retention': _('The retention of the service was saved.'),
}


def showValue(name, value):
    """A setting as a field shows it ('' for None)."""
    if value is None:
        return ''
    if name == 'rateLimit':
        count, seconds = value
        return f'{count} per {seconds:g} s'
    if name in ('keepCompleted', 'keepFailed'):
        return formatRetention(value)
    return str(value)


def _field(form, name):
    value = formText(form, name)
    if value is None:
        raise ValueError(f'{name}: expected text')
    return value.strip()


def readOverrides(form):
    """The overrides of a task's form: ``{setting: value}`` (values as
    ``setTaskLimits`` takes them); ValueError for bad input."""
    overrides = {}
    cap = _field(form, 'maxConcurrent')
    if cap.lower() == NONE:
        overrides['maxConcurrent'] = None
    elif cap:
        if not cap.isdigit():
            raise ValueError(f'maxConcurrent must be a number >= 1 or '
                             f'"none", not {cap!r}')
        overrides['maxConcurrent'] = int(cap)
    count, seconds = _field(form, 'rateCount'), _field(form, 'rateSeconds')
    if count.lower() == NONE:
        overrides['rateLimit'] = None
    elif count or seconds:
        try:
            overrides['rateLimit'] = (int(count), float(seconds))
        except ValueError:
            raise ValueError(f'rateLimit: a number of jobs and a number of '
                             f'seconds, not {count!r} and {seconds!r}')
    for name in ('keepCompleted', 'keepFailed'):
        value = _field(form, name)
        if value.lower() == NONE:
            overrides[name] = None
        elif value:
            overrides[name] = value
    return overrides


class LimitsView(BrowserPage):
    """The limits of the tasks of a service (see the module doc)."""

    template = ViewPageTemplateFile('limits.pt')
    message = None
    error = None

    def __call__(self):
        refused = refuseCrossOrigin(self.request)
        if refused is not None:
            return refused
        form = self.request.form
        if self.request.method == 'POST':
            for button, action in (('SAVE', self.save),
                                   ('RESET', self.reset),
                                   ('RETENTION', self.retention)):
                if button in form:
                    if not self.canManage():
                        raise Unauthorized('lovely.remotetask.Manage is '
                                           'needed')
                    try:
                        done = action(form)
                    except ValueError as error:
                        self.error = str(error)
                        self.request.response.setStatus(400)
                        return self.template()
                    self.request.response.redirect(
                        f'{self.url()}?done={done}', status=303)
                    return ''
        done = form.get('done')
        if isinstance(done, str) and done in MESSAGES:
            self.message = MESSAGES[done]
        return self.template()

    def _task(self, form):
        task = formText(form, 'task')
        if task is None or task not in self.taskNames():
            raise ValueError(f'Unknown task: {task!r}')
        return task

    def save(self, form):
        task = self._task(form)
        overrides = readOverrides(form)
        service = self.context
        # Checked before anything changes: a bad value changes nothing.
        service.setTaskLimits(task, **overrides)
        service.clearTaskLimits(task)
        if overrides:
            service.setTaskLimits(task, **overrides)
        return 'saved'

    def reset(self, form):
        self.context.clearTaskLimits(self._task(form))
        return 'reset'

    def retention(self, form):
        self.context.setRetention(_field(form, 'keepCompleted') or None,
                                  _field(form, 'keepFailed') or None)
        return 'retention'

    def url(self):
        return absoluteURL(self.context, self.request) + '/@@limits.html'

    def canManage(self):
        return checkPermission(MANAGE, self.context)

    def taskNames(self):
        service = removeSecurityProxy(self.context)
        return sorted(set(service.getAvailableTasks())
                      | set(service._taskSettings))

    def serviceRetention(self):
        service = self.context
        return {'keepCompleted': formatRetention(service.keepCompleted),
                'keepFailed': formatRetention(service.keepFailed)}

    def tasks(self):
        """Each task's limits, ready for the template."""
        service = removeSecurityProxy(self.context)
        rows = []
        for task in self.taskNames():
            limits = service.taskLimits(task)
            overrides = service._taskSettings.get(task, {})
            gate = service._gates.get(task)

            def field(name, value=None):
                if name not in overrides:
                    return ''
                value = overrides[name] if value is None else value
                return NONE if value is None else value
            rate = overrides.get('rateLimit')
            rows.append({
                'name': task,
                'shown': {name: showValue(name, value) or '-'
                          for name, value in limits.items()},
                'overridden': ', '.join(sorted(overrides)) or '-',
                'running': 0 if gate is None else gate.running(),
                'held': 0 if gate is None else sum(
                    1 for key in timeset.timeKeys(gate.held)),
                'fields': {
                    'maxConcurrent': field('maxConcurrent'),
                    'rateCount': field('rateLimit') if rate is None
                    else str(rate[0]),
                    'rateSeconds': '' if rate is None else f'{rate[1]:g}',
                    'keepCompleted': field('keepCompleted') if overrides.get(
                        'keepCompleted') is None else formatRetention(
                            overrides['keepCompleted']),
                    'keepFailed': field('keepFailed') if overrides.get(
                        'keepFailed') is None else formatRetention(
                            overrides['keepFailed']),
                }})
        return rows
