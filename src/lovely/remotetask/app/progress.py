"""A progress bar for the long commands of ``remotetask`` (clean, cancel
all, retry all, bulk add).

On a terminal the bar is redrawn in place on standard error; elsewhere
(a pipe, a log file, cron) nothing is drawn: the command prints its
result when it is done, which is all a script needs.

    >>> import io
    >>> class Terminal(io.StringIO):
    ...     def isatty(self):
    ...         return True
    >>> terminal = Terminal()
    >>> bar = Progress(2000, 'Removing', stream=terminal, width=10)
    >>> bar(1000)
    >>> bar(2000)
    >>> bar.finish()
    >>> print(terminal.getvalue().replace('\\r', '\\n'))
    <BLANKLINE>
    Removing [#####     ]  50% 1,000/2,000
    Removing [##########] 100% 2,000/2,000
    <BLANKLINE>

    >>> piped = io.StringIO()
    >>> bar = Progress(2000, 'Removing', stream=piped)
    >>> bar(1000); bar.finish()
    >>> piped.getvalue()
    ''
"""
import sys


class Progress:
    """Call it with the number done so far; ``finish()`` at the end."""

    def __init__(self, total, label, stream=None, width=30):
        self.total = max(total, 0)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.done = 0
        isatty = getattr(self.stream, 'isatty', None)
        self.shown = bool(isatty and isatty())

    def __call__(self, done):
        self.done = done
        if not self.shown:
            return
        total = max(self.total, done, 1)
        filled = self.width * done // total
        bar = '#' * filled + ' ' * (self.width - filled)
        self.stream.write(f'\r{self.label} [{bar}] {100 * done // total:3d}%'
                          f' {done:,}/{max(self.total, done):,}')
        self.stream.flush()

    def finish(self):
        if self.shown:
            self.stream.write('\n')
            self.stream.flush()
