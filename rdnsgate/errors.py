"""The few exceptions rdnsgate raises.

Expected DNS outcomes (NXDOMAIN, NODATA, timeouts) are values in
`rdnsgate.model.Lookup`, never exceptions.  These are for bad input and bad
configuration; each front end maps them to its protocol in one place.
"""

from __future__ import annotations


class RdnsgateError(Exception):
    """Base class: the message is meant for the user, one line."""


class UsageError(RdnsgateError):
    """A value given by the user (argument, option, file line) is not valid."""


class ConfigError(RdnsgateError):
    """The configuration cannot be used; the message names the key."""


class StoreUnavailable(RdnsgateError):
    """The database cannot be reached (or answered with an error); the message names it, without a password."""
