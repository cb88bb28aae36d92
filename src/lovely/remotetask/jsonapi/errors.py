"""The errors of the JSON API: an HTTP status and a message.

Every error is answered as ``application/problem+json`` (RFC 9457)::

    {"status": 404, "title": "Not Found", "detail": "No such job: 7"}

with, where it helps, members of its own (RFC 9457's extension members:
``jobid``, the job that holds a unique key).  The transaction of the
request is doomed: nothing it did is stored.
"""
import http

from lovely.remotetask.interfaces import DataTooLarge
from lovely.remotetask.interfaces import InvalidJobId
from lovely.remotetask.interfaces import InvalidSchedule
from lovely.remotetask.interfaces import NoSuchJob
from lovely.remotetask.interfaces import NotRetryable
from lovely.remotetask.interfaces import UnknownTask


PROBLEM = 'application/problem+json'


class APIError(Exception):
    """An answer of the API that is an error (see the module)."""

    def __init__(self, status, detail, headers=(), **members):
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.headers = tuple(headers)
        self.members = members

    @property
    def title(self):
        return http.HTTPStatus(self.status).phrase

    def data(self):
        return dict(self.members, status=self.status, title=self.title,
                    detail=self.detail)


def BadRequest(detail):
    return APIError(400, detail)


def Conflict(detail, **members):
    return APIError(409, detail, **members)


#: The service's exceptions and the status each one is answered with.
STATUSES = (
    (NoSuchJob, 404),
    (InvalidJobId, 404),
    (UnknownTask, 400),
    (InvalidSchedule, 400),
    (DataTooLarge, 413),
    (NotRetryable, 409),
)
SERVICE_ERRORS = tuple(exception for exception, status in STATUSES)


def fromServiceError(error):
    """The APIError for one of ``SERVICE_ERRORS``."""
    status = next(status for exception, status in STATUSES
                  if isinstance(error, exception))
    return APIError(status, str(error))
