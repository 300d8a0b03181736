"""Outbound HTTP to addresses users typed in (webhooks). One place, so the URL policy lives in one module."""

import httpx


def post(url: str, *, content: bytes, headers: dict, timeout) -> httpx.Response:
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        return client.post(url, content=content, headers=headers)
