"""A clean stop on Ctrl-C (SIGINT) or SIGTERM, anywhere in a long command.

``with StopSignals() as stop:`` the first signal only sets ``stop.requested`` (the loop
finishes its current unit of work, saves what is done and returns); a second one raises
`Interrupted` at once. ``linkhoi.cli.main`` turns an `Interrupted` (or a plain
``KeyboardInterrupt``, say during start-up) into one line and exit code 130, never a traceback.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop that cannot wait (a second Ctrl-C); its message says what was kept."""


class StopSignals:
    """Catch SIGINT / SIGTERM for the block; restore the previous handlers after it.

    Args:
        second: the message of the `Interrupted` a second signal raises.

    Signal handlers can only be installed from the main thread: elsewhere (a notebook worker)
    the block runs with the usual handlers and ``requested`` stays False.
    """

    def __init__(self, second: str = "stopped at once by a second signal") -> None:
        self.second = second
        self.signal: int | None = None  # the first signal received
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        """Has a stop been asked for?"""
        return self.signal is not None

    @property
    def name(self) -> str:
        """``"Ctrl-C"`` or ``"SIGTERM"`` (for messages)."""
        return "Ctrl-C" if self.signal == signal.SIGINT else "SIGTERM"

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signal is not None:
            raise Interrupted(self.second)
        self.signal = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in HANDLED}
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
