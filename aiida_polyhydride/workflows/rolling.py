"""Keep at most N children of a work chain running, starting the next as soon as any one ends.

aiida-core resumes a work chain when *all* the children a step waits on have terminated, so a batch of N runs ends
with idle slots while the slowest finishes. A work chain that mixes in :class:`RollingSubmissionMixin` and returns
:meth:`~RollingSubmissionMixin.wait_for_any` from a step is resumed when the *first* of them terminates; its step then
collects whatever has terminated, fills the free slots and waits again. The children still running are awaited again
by the next step (a child's callback from the earlier wait is recognised and dropped), and after a daemon restart the
awaitables of the checkpoint are re-registered as usual.

This relies on :meth:`aiida.engine.WorkChain._on_awaitable_finished` (a private hook of aiida-core 2.x): the only
place where the engine decides to resume. ``tests/test_label.py`` checks the behaviour against a real daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiida import orm
from aiida.engine import ToContext
from plumpy.process_states import ProcessState

__all__ = ('RollingSubmissionMixin', 'failure_reason', 'validate_max_concurrent')

_WAIT_ANY = 'wait_for_any_child'
_PREFIX = 'running_'


def failure_reason(node: orm.ProcessNode) -> str:
    """One line on why a child did not finish ok: its exit message, else the last line of its exception."""
    return node.exit_message or (node.exception or 'excepted or killed').splitlines()[-1]


def validate_max_concurrent(value: orm.Int, _) -> str | None:
    """Port validator of a ``max_concurrent`` input: at least one child at a time."""
    return None if value.value >= 1 else f'max_concurrent must be at least 1, got {value.value}'


class RollingSubmissionMixin:
    """Mixin for a WorkChain with a ``max_concurrent`` input: a queue of children, at most that many running.

    The work chain puts its queue in place with :meth:`start_queue` (one entry per child to submit, anything a
    checkpoint can hold) and loops ``while_(cls.children_left)(step)``, where ``step`` returns :meth:`roll`.
    """

    def start_queue(self, pending: list) -> None:
        """The children still to submit (entries passed one by one to ``submit_next`` of :meth:`roll`)."""
        self.ctx.pending = list(pending)
        self.ctx.running = {}

    def children_left(self) -> bool:
        return bool(self.ctx.pending or self.ctx.running)

    def roll(
        self,
        submit_next: Callable[[Any], tuple[str, orm.ProcessNode]],
        collect: Callable[[str, orm.ProcessNode], None],
    ) -> ToContext | None:
        """Collect the children that ended, submit queued ones into the free slots, wait for the next to end.

        ``submit_next(entry)`` submits the child of one queue entry and returns (key, node); ``collect(key, node)``
        files a terminated child. A child starts as soon as a slot frees up: no batch waits for its slowest member.
        """
        for key, node in list(self.ctx.running.items()):
            if node.is_terminated:
                self.ctx.pop(f'{_PREFIX}{key}', None)
                collect(key, self.ctx.running.pop(key))
        while self.ctx.pending and len(self.ctx.running) < self.inputs.max_concurrent.value:
            key, node = submit_next(self.ctx.pending.pop(0))
            self.ctx.running[key] = node
        if self.ctx.running:
            return self.wait_for_any(self.ctx.running)
        return None

    def wait_for_any(self, running: Mapping[str, orm.ProcessNode]) -> ToContext:
        """Await ``running`` (key -> child node); the work chain continues when the first of them terminates."""
        self.ctx[_WAIT_ANY] = True
        return ToContext(**{f'{_PREFIX}{key}': node for key, node in running.items()})

    def _on_awaitable_finished(self, awaitable) -> None:
        # a child still running when the step resumed is awaited again by the next step: the callback of the earlier
        # wait then arrives with the earlier (equal) awaitable, and the one in the list is the one to resolve
        current = next((entry for entry in self._awaitables if entry == awaitable), None)
        if current is None:
            return  # already resolved through the other wait's callback
        super()._on_awaitable_finished(current)
        if self.ctx.get(_WAIT_ANY) and self._awaitables and self.state == ProcessState.WAITING:
            self.ctx[_WAIT_ANY] = False
            self.resume()
