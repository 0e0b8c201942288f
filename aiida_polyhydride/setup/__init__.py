"""Idempotent set-up of what the plugin needs in an AiiDA profile: the profile itself, a computer, codes, pseudos.

Each step returns a :class:`SetupResult` saying whether it changed anything, so ``aiida-polyhydride setup`` can
report a second run as a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass


class SetupError(Exception):
    """A set-up step cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class SetupResult:
    """What one set-up step found or did."""

    what: str
    changed: bool
    message: str

    def __str__(self) -> str:
        state = 'created' if self.changed else 'exists'
        return f'{self.what}: {state}: {self.message}'
