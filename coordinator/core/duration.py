"""Signed durations for an edge's ``shift``: parsing the two written forms and the one canonical form.

Rules:
- **Two forms** are read: the compact ``[+-]NdNhNmNs`` (any non-empty subset of the parts, in that order: ``-4h``,
  ``-5d16h``, ``+30m``, ``0s``) and an ISO 8601 duration of days and time (``-P1DT4H``, ``PT30M``). Years, months and
  weeks are refused: their length depends on the date, and a shift is a fixed number of seconds, like Airflow's
  ``execution_delta`` (a ``timedelta``).
- **Canonical form.** The canonical form is the compact one with every non-zero part and no ``+`` (``-1d4h``; zero is
  ``0s``), so two spellings of one shift give one graph digest. The importer writes this form.
- **Pure**; a problem is returned as text for the loader to report with its JSON path, never raised.
"""

from __future__ import annotations

import re

_COMPACT = re.compile(r"^(?P<sign>[+-]?)(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_ISO = re.compile(
    r"^(?P<sign>[+-]?)P(?:(?P<d>\d+)D)?(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$",
    re.IGNORECASE,
)
_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
#: A shift beyond this is a typo rather than a dependency (Airflow sensors look back days or weeks, not decades).
MAX_SHIFT_SECONDS = 3_660 * 86_400
SHIFT_HINT = 'write a signed duration such as "-4h", "-5d16h", "+30m" or "-P1DT4H" (negative looks back)'


def parse_shift(text: str) -> int | str:
    """The shift in seconds, or the reason ``text`` is not one (**Two forms**)."""
    stripped = text.strip()
    match = _COMPACT.match(stripped)
    if match is None or not any(match.group(unit) for unit, _ in _UNITS):
        match = _ISO.match(stripped)
        if match is None or not any(match.group(unit) for unit, _ in _UNITS):
            return f"{text!r} is not a duration"
    seconds = sum(int(match.group(unit) or 0) * size for unit, size in _UNITS)
    if seconds > MAX_SHIFT_SECONDS:
        return f"{text!r} is more than {MAX_SHIFT_SECONDS // 86_400} days"
    return -seconds if match.group("sign") == "-" else seconds


def format_shift(seconds: int) -> str:
    """The canonical compact form of a shift (**Canonical form**): ``-1d4h``, ``+30m`` is ``30m``, zero is ``0s``."""
    if seconds == 0:
        return "0s"
    rest = abs(seconds)
    parts = []
    for unit, size in _UNITS:
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return ("-" if seconds < 0 else "") + "".join(parts)
