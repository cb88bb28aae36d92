"""The five schedule fields of a cron job as text, for forms.

A field is comma-separated parts, each a number, a range or ``*`` (every
value), optionally with a step; the day of the week counts as Python's
``weekday()``, 0 is Monday and 6 is Sunday::

    >>> parseField('0,15,30,45', 'minute')
    (0, 15, 30, 45)
    >>> parseField('*/20', 'minute')
    (0, 20, 40)
    >>> parseField('1-5', 'dayOfWeek')
    (1, 2, 3, 4, 5)
    >>> parseField('9-17/4, 22', 'hour')
    (9, 13, 17, 22)

``*`` alone, or nothing, selects every value; the job stores that as the
empty tuple, which means "any"::

    >>> parseField('*', 'month'), parseField(' ', 'month')
    ((), ())

A field that selects every value by enumeration is stored the same way,
so that a schedule means one thing whatever way it was written::

    >>> parseField('0-6', 'dayOfWeek')
    ()

Formatting goes the other way, with the shortest ranges::

    >>> formatField(())
    '*'
    >>> formatField(tuple(range(24)), 'hour')
    '*'
    >>> formatField((0, 1, 2, 3, 10, 20, 21))
    '0-3,10,20,21'

Bad text raises ``InvalidSchedule`` with a message for the user::

    >>> parseField('61', 'minute')
    Traceback (most recent call last):
    ...
    lovely.remotetask.interfaces.InvalidSchedule: minute: 61 is not in 0..59
    >>> parseField('mon', 'dayOfWeek')
    Traceback (most recent call last):
    ...
    lovely.remotetask.interfaces.InvalidSchedule: dayOfWeek: 'mon' is not ...
"""
from lovely.remotetask.cron import RANGES
from lovely.remotetask.cron import effective
from lovely.remotetask.interfaces import InvalidSchedule


#: field name -> (lowest, highest) allowed value
BOUNDS = {name: (low, high) for name, low, high in RANGES}
#: the field names in schedule order
FIELDS = tuple(name for name, low, high in RANGES)


def parseField(text, name):
    """The tuple of values that ``text`` selects for the field ``name``."""
    low, high = BOUNDS[name]
    values = set()
    for part in text.replace(' ', '').split(','):
        if part:
            values.update(_parsePart(part, name, low, high))
    if values >= set(range(low, high + 1)):
        return ()
    return tuple(sorted(values))


def _parsePart(part, name, low, high):
    spec, _, step = part.partition('/')
    try:
        step = int(step) if step else 1
        if spec == '*':
            first, last = low, high
        else:
            first, _, last = spec.partition('-')
            first = int(first)
            last = int(last) if last else first
    except ValueError:
        raise InvalidSchedule(
            f'{name}: {part!r} is not a number, a range (1-5) or * '
            f'(with an optional /step)')
    for value in (first, last):
        if not low <= value <= high:
            raise InvalidSchedule(f'{name}: {value} is not in {low}..{high}')
    if step < 1:
        raise InvalidSchedule(f'{name}: the step of {part!r} must be >= 1')
    if last < first:
        raise InvalidSchedule(f'{name}: the range {part!r} is empty')
    return range(first, last + 1, step)


#: How fine each field is: the service steps a schedule by the finest
#: field given (see cron.py).
LEVEL = {'minute': 0, 'hour': 1, 'dayOfMonth': 2, 'dayOfWeek': 2,
         'month': 3}


def fromForm(fields):
    """The fields a form's text means, as the service stores them.

    In a form every field is shown: ``*`` there means every value, as a
    reader expects.  The service reads an empty field finer than the
    finest given one as its lowest value (cron.py), so a ``*`` finer than
    a restricted field is stored as every value, spelled out::

    >>> s = fromForm(dict(minute=(), hour=(3,), dayOfMonth=(), month=(),
    ...                   dayOfWeek=()))
    >>> len(s['minute']), s['hour'], s['dayOfMonth']
    (60, (3,), ())
    >>> fromForm(dict(minute=(0,), hour=(3,), dayOfMonth=(), month=(),
    ...               dayOfWeek=()))['minute']
    (0,)
    """
    result = dict(fields)
    for name in FIELDS:
        if not fields[name] and any(fields[other] for other in FIELDS
                                    if LEVEL[other] > LEVEL[name]):
            low, high = BOUNDS[name]
            result[name] = tuple(range(low, high + 1))
    return result


def toForm(job):
    """A cron job's schedule as the form's texts: the schedule as it runs
    (``cron.effective``), ``*`` for every value."""
    fields = effective({name: getattr(job, name) for name in FIELDS})
    return {name: formatField(fields[name], name) for name in FIELDS}


WEEKDAYS = ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')


def formatWeekdays(values):
    """Days of the week (0 is Monday) by name, for reading::

    >>> formatWeekdays((0, 1, 2, 3, 4)), formatWeekdays((0, 6))
    ('Mon-Fri', 'Mon,Sun')
    >>> formatWeekdays(())
    '*'
    """
    return formatField(values, 'dayOfWeek', lambda day: WEEKDAYS[day])


def formatField(values, name=None, label=str):
    """The text of a field's values: ``*`` for any (or, with the field's
    name, for every value), else numbers and ranges."""
    if not values:
        return '*'
    if name is not None:
        low, high = BOUNDS[name]
        if set(values) >= set(range(low, high + 1)):
            return '*'
    parts = []
    run = [values[0]]
    for value in values[1:]:
        if value == run[-1] + 1:
            run.append(value)
        else:
            parts.append(run)
            run = [value]
    parts.append(run)
    return ','.join(
        f'{label(run[0])}-{label(run[-1])}' if len(run) > 3 else
        ','.join(label(v) for v in run) for run in parts)


def formatSchedule(job):
    """A cron job's schedule in one line: minute, hour, day of month, month
    and the days of the week by name, as the schedule runs."""
    if job.delay is not None:
        return f'once, {job.delay:g} s after it was scheduled'
    texts = toForm(job)
    texts['dayOfWeek'] = formatWeekdays(job.dayOfWeek)
    return ' '.join(texts[name] for name in FIELDS)
