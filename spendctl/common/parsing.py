"""Small parsers for values that arrive as text from query strings and JSON bodies."""


def ascii_int(value: str) -> int | None:
    """The integer spelt by `value` in ASCII digits, else None.

    `str.isdigit()` is true for "³" or "٣", which `int()` then rejects or reads as another number;
    ids in query strings and event fields are ASCII digits only.
    """
    if value and value.isascii() and value.isdigit():
        return int(value)
    return None
