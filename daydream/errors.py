"""The one exception type users see: bad input, reported as one line with exit status 2 (by
daydream.cli.OneLineErrors on the command line)."""


class DaydreamError(Exception):
    """Input that daydream cannot work with; the message says what is wrong and what to do."""
