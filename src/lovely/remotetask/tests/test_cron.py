"""Cron schedules: every combination of fields, against a brute force.

The reference below says what lovely.remotetask 0.5.2 did, in its own
terms: it stepped from an aligned start by the finest field given (a
minute, an hour, a day, a month) and kept the steps where every given
field matched.  ``cron.nextRun`` must find exactly those minutes.
"""
import datetime
import itertools
import unittest

from lovely.remotetask import cron


UTC = datetime.timezone.utc
# Values that all meet within the window: Sunday 3 January 2027, 05:07.
VALUES = dict(minute=(7,), hour=(5,), dayOfMonth=(3,), month=(1,),
              dayOfWeek=(6,))
START = datetime.datetime(2026, 12, 27, 1, tzinfo=UTC)
END = datetime.datetime(2027, 1, 11, tzinfo=UTC)


def aligned(t, fields):
    """Is ``t`` a step of the finest given field (0.5.2's step)?"""
    if fields.get('minute'):
        return True
    if fields.get('hour'):
        return t.minute == 0
    if fields.get('dayOfMonth') or fields.get('dayOfWeek'):
        return (t.hour, t.minute) == (0, 0)
    if fields.get('month'):
        return (t.day, t.hour, t.minute) == (1, 0, 0)
    return True


def matches(t, fields):
    return all(not fields.get(name) or value in fields[name]
               for name, value in (('minute', t.minute), ('hour', t.hour),
                                   ('dayOfMonth', t.day),
                                   ('month', t.month),
                                   ('dayOfWeek', t.weekday())))


def _minutes():
    t, result = START + datetime.timedelta(minutes=1), []
    while t < END:
        result.append(t)
        t += datetime.timedelta(minutes=1)
    return result


MINUTES = _minutes()


def bruteForce(fields):
    return [t for t in MINUTES if aligned(t, fields) and matches(t, fields)]


def walk(fields):
    found, t = [], START
    while True:
        t = cron.nextRun(fields, t)
        if t is None or t >= END:
            return found
        found.append(t)


class EveryCombination(unittest.TestCase):

    def test_all_32_combinations(self):
        names = list(VALUES)
        for n in range(len(names) + 1):
            for chosen in itertools.combinations(names, n):
                fields = {name: VALUES[name] for name in chosen}
                if not fields:
                    continue   # every minute: checked below, cheaper
                with self.subTest(fields=chosen):
                    expected = bruteForce(fields)
                    self.assertTrue(expected)
                    self.assertEqual(walk(fields), expected)

    def test_nothing_given_is_every_minute(self):
        t = datetime.datetime(2026, 12, 31, 23, 58, 30, tzinfo=UTC)
        self.assertEqual(cron.nextRun({}, t),
                         datetime.datetime(2026, 12, 31, 23, 59, tzinfo=UTC))

    def test_a_nightly_job_runs_once_a_night(self):
        self.assertEqual(len(walk(dict(hour=(3,)))), 15)

    def test_step_field_alone(self):
        first = {
            'minute': datetime.datetime(2026, 12, 27, 1, 7, tzinfo=UTC),
            'hour': datetime.datetime(2026, 12, 27, 5, 0, tzinfo=UTC),
            'dayOfMonth': datetime.datetime(2027, 1, 3, tzinfo=UTC),
            'month': datetime.datetime(2027, 1, 1, tzinfo=UTC),
            'dayOfWeek': datetime.datetime(2027, 1, 3, tzinfo=UTC),
        }
        for name, when in first.items():
            with self.subTest(field=name):
                self.assertEqual(walk({name: VALUES[name]})[0], when)

    def test_schedules_that_never_match_are_refused(self):
        from lovely.remotetask.interfaces import InvalidSchedule
        # Only a month given means its 1st; a day given with it must exist.
        self.assertEqual(cron.normalizeSchedule(month=(2,))['month'], (2,))
        with self.assertRaises(InvalidSchedule):
            cron.normalizeSchedule(dayOfMonth=(31,), month=(4, 6))
