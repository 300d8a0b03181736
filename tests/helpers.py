"""Assertions shared by API tests."""


def assert_error(response, status, code=None, fields=None):
    """Every 4xx has the one shape: {"error": {"code", "message", "fields"}}."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    if fields:
        assert set(fields) <= set(body["error"]["fields"]), body
    return body["error"]
