"""Schedule arithmetic for cron jobs.

A schedule is five fields (minute, hour, dayOfMonth, month, dayOfWeek),
each a tuple of allowed values.  A time matches when *all* fields match
(the original package's rule: unlike Unix cron, day of month and day of
week are not or-ed).  ``dayOfWeek`` counts as Python's
``datetime.weekday()``: 0 is Monday, 6 is Sunday (crontab's 0 is Sunday).

The finest field given sets the step, as in lovely.remotetask 0.5.2: the
empty fields *finer* than it mean their lowest value, the empty fields
*coarser* than it mean "any".  So ``hour=(2, 13)`` runs at 02:00 and 13:00
(crontab's ``0 2,13 * * *``), ``dayOfMonth=(1,)`` or ``dayOfWeek=(0,)`` at
00:00 of those days, ``month=(5,)`` at 00:00 on May 1st.  Only a schedule
whose finest given field is ``minute`` (or one with no field at all) runs
every matching minute.  The day fields (dayOfMonth, dayOfWeek) are one
level, between hour and month.

Times are UTC and runs are aligned to the minute, computed from the
schedule (never from the previous run's end), so they do not drift.
"""
import calendar
import datetime


UTC = datetime.timezone.utc

#: field name -> (lowest, highest) allowed value
RANGES = (
    ('minute', 0, 59),
    ('hour', 0, 23),
    ('dayOfMonth', 1, 31),
    ('month', 1, 12),
    ('dayOfWeek', 0, 6),
)

# The Gregorian calendar repeats its weekdays every 400 years: a schedule
# that matches no minute in that span matches none ever.
_CYCLE_YEARS = 400


def normalize(value, name, low, high):
    """A sorted tuple of the allowed values of one field.

    >>> normalize([5, 1, 5], 'minute', 0, 59)
    (1, 5)
    >>> normalize(None, 'minute', 0, 59)
    ()
    >>> normalize((60,), 'minute', 0, 59)
    Traceback (most recent call last):
    ...
    lovely.remotetask.interfaces.InvalidSchedule: minute: 60 is not in 0..59
    """
    from lovely.remotetask.interfaces import InvalidSchedule
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        values = tuple(value)
    except TypeError:
        raise InvalidSchedule(
            f'{name}: expected a sequence of integers, got {value!r}')
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidSchedule(f'{name}: {v!r} is not an integer')
        if not low <= v <= high:
            raise InvalidSchedule(f'{name}: {v} is not in {low}..{high}')
    return tuple(sorted(set(values)))


def normalizeSchedule(minute=(), hour=(), dayOfMonth=(), month=(),
                      dayOfWeek=()):
    """Validate the five fields; return them as a dict of sorted tuples.

    A schedule that can never match is rejected:

    >>> normalizeSchedule(dayOfMonth=(30, 31), month=(2,))
    Traceback (most recent call last):
    ...
    lovely.remotetask.interfaces.InvalidSchedule: the schedule never ...
    """
    from lovely.remotetask.interfaces import InvalidSchedule
    given = dict(minute=minute, hour=hour, dayOfMonth=dayOfMonth,
                 month=month, dayOfWeek=dayOfWeek)
    fields = {name: normalize(given[name], name, low, high)
              for name, low, high in RANGES}
    start = datetime.datetime(2000, 1, 1, tzinfo=UTC)
    if nextRun(fields, start, _CYCLE_YEARS) is None:
        days = ' or '.join(str(d) for d in fields['dayOfMonth'])
        months = ', '.join(str(m) for m in fields['month'])
        if 0 < len(fields['dayOfWeek']) < 7:
            reason = 'no date matches day of month, month and day of week'
        else:
            reason = f'no month {months} has day {days}'
        raise InvalidSchedule(f'the schedule never matches: {reason}')
    return fields


def effective(fields):
    """The schedule as it runs: empty fields finer than the finest given
    field take their lowest value (see the module doc).

    >>> effective({'hour': (2, 13)})['minute']
    (0,)
    >>> e = effective({'month': (5,)})
    >>> e['minute'], e['hour'], e['dayOfMonth'], e['dayOfWeek']
    ((0,), (0,), (1,), ())
    >>> e = effective({'dayOfWeek': (0,)})
    >>> e['minute'], e['hour'], e['dayOfMonth']
    ((0,), (0,), ())
    >>> effective({'minute': (5,), 'month': (1,)})['hour']
    ()
    >>> e = effective({'hour': (12,), 'month': (12,)})
    >>> e['minute'], e['dayOfMonth']
    ((0,), ())
    """
    result = {name: tuple(fields.get(name, ())) for name, _, _ in RANGES}
    # The steps from the finest to the coarsest, and the lowest value each
    # takes when a coarser one is the finest given.
    steps = ((('minute',), 'minute', 0), (('hour',), 'hour', 0),
             (('dayOfMonth', 'dayOfWeek'), 'dayOfMonth', 1),
             (('month',), 'month', 1))
    given = [any(result[name] for name in names) for names, _, _ in steps]
    if True not in given:
        return result
    for _, name, lowest in steps[:given.index(True)]:
        result[name] = (lowest,)
    return result


def _allowed(values, low, high):
    return values or tuple(range(low, high + 1))


def nextRun(fields, after, years=_CYCLE_YEARS + 1):
    """The first minute strictly after ``after`` that matches ``fields``.

    ``after`` is an aware datetime; the result is an aware UTC datetime
    with zero seconds, or None if nothing matches within ``years``.  The
    fields are taken as ``effective()`` reads them.

    >>> t = datetime.datetime(2026, 11, 27, 10, 30, 15, tzinfo=UTC)
    >>> print(nextRun({}, t))
    2026-11-27 10:31:00+00:00
    >>> print(nextRun({'hour': (3,)}, t))
    2026-11-28 03:00:00+00:00
    >>> print(nextRun({'dayOfMonth': (29,), 'month': (2,)}, t))
    2028-02-29 00:00:00+00:00
    """
    after = after.astimezone(UTC)
    fields = effective(fields)
    minutes = _allowed(fields.get('minute', ()), 0, 59)
    hours = _allowed(fields.get('hour', ()), 0, 23)
    days = _allowed(fields.get('dayOfMonth', ()), 1, 31)
    months = _allowed(fields.get('month', ()), 1, 12)
    weekdays = set(_allowed(fields.get('dayOfWeek', ()), 0, 6))
    # The first candidate minute: the next whole minute after ``after``.
    first = after.replace(second=0, microsecond=0) + datetime.timedelta(
        minutes=1)
    for year in range(first.year, first.year + years):
        for month in months:
            if (year, month) < (first.year, first.month):
                continue
            lastday = calendar.monthrange(year, month)[1]
            for day in days:
                if day > lastday:
                    break
                date = datetime.date(year, month, day)
                if date < first.date() or date.weekday() not in weekdays:
                    continue
                for hour in hours:
                    for minute in minutes:
                        candidate = datetime.datetime(
                            year, month, day, hour, minute, tzinfo=UTC)
                        if candidate >= first:
                            return candidate
    return None
