"""The one base class of the errors a user can cause (bad input, bad options, a missing plug-in).

Every such error derives from :class:`EmpcnError` and carries a one-line message that names the
file, sample or option and the reason; the CLI catches ``EmpcnError`` in one place and prints
``error: <message>`` with exit status 2. Anything else that escapes is a bug in empcn.

Standard library only: every stage imports it.
"""

from __future__ import annotations


class EmpcnError(Exception):
    """An error the user can fix: one line naming what is wrong and where."""


class RegistryError(EmpcnError, LookupError):
    """An unknown data set, task or model name, or a plug-in that is missing or broken."""
