"""Schemathesis hooks for `.ci/fuzz` (loaded through SCHEMATHESIS_HOOKS).

The fuzzer holds one admin token. DELETE /api/v1/tokens/{id} revokes a token, and revoking the fuzzer's own token
would turn every later request into a 401 and end the run's coverage, so that one id is swapped for an id that
does not exist (the request is still sent and must be a 404). Every other token, and every other route, is fuzzed
as published.
"""

import os

import schemathesis

OWN_TOKEN_ID = os.environ.get("FUZZ_TOKEN_ID", "")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    own = str((case.path_parameters or {}).get("id")) == OWN_TOKEN_ID
    if own and case.method.upper() == "DELETE" and case.operation.path.endswith("/tokens/{id}"):
        case.path_parameters["id"] = 2_000_000_000
