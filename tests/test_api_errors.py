"""The API's error shape for server-side trouble (runs on every database; the fault tests prove it end to end)."""

import psycopg
from django.db import InterfaceError, OperationalError
from rest_framework.test import APIRequestFactory

from spendctl.common.api import DATABASE_RETRY_AFTER, exception_handler


def test_a_lost_database_is_a_503_in_the_one_error_shape_with_retry_after():
    request = APIRequestFactory().post("/api/v1/events")
    for exc in (
        OperationalError(
            'connection to server at "10.0.0.5", port 5432 failed: server closed the connection'
        ),
        InterfaceError("connection already closed"),
        psycopg.OperationalError(
            "consuming input failed: server closed the connection unexpectedly"
        ),  # raw COPY
    ):
        response = exception_handler(exc, {"request": request})
        assert response.status_code == 503
        assert response["Retry-After"] == str(DATABASE_RETRY_AFTER)
        assert response.data == {
            "error": {
                "code": "unavailable",
                "message": "The service is briefly unavailable; retry the request shortly.",
                "fields": {},
            }
        }
