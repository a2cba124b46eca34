"""The nanny's pure helpers: death reasons and the restart back-off."""

from __future__ import annotations

import asyncio
from typing import Any

from shoal.nanny import BACKOFF_FIRST, BACKOFF_MAX, Nanny, death_reason, restart_delay


def test_death_reason_names_signals_and_exit_codes() -> None:
    assert death_reason(-9) == "killed by signal 9 (SIGKILL)"
    assert death_reason(-15) == "killed by signal 15 (SIGTERM)"
    assert death_reason(1) == "exit code 1"
    assert death_reason(-200) == "killed by signal 200 (unknown)"


def test_restart_delay_grows_after_the_second_young_death_and_is_capped() -> None:
    assert restart_delay(0) == 0.0
    assert restart_delay(1) == 0.0
    assert restart_delay(2) == BACKOFF_FIRST
    assert restart_delay(3) == 2 * BACKOFF_FIRST
    assert restart_delay(100) == BACKOFF_MAX


class _Recorder(Nanny):
    """A nanny whose worker starts and reports are recorded, not done."""

    def __init__(self) -> None:
        super().__init__("tcp://127.0.0.1:1", memory_limit=0)
        self.status = "running"
        self.started = 0
        self.reported: list[str] = []

    async def _start_worker(self) -> None:
        self.started += 1

    async def _report(
        self, address: str | None, reason: str, running: list[tuple[Any, int]] | None = None
    ) -> None:
        self.reported.append(reason)


def test_only_deaths_before_registration_grow_the_back_off() -> None:
    async def main() -> tuple[int, float]:
        nanny = _Recorder()
        for _ in range(5):  # a running worker SIGKILLed again and again: restarted at once
            await nanny._died("killed by signal 9 (SIGKILL)", registered=True)
        assert nanny._young_deaths == 0 and nanny.started == 5
        await nanny._died("exit code 1", registered=False)
        await nanny._died("exit code 1", registered=False)
        young = nanny._young_deaths
        await nanny._died("killed by signal 9 (SIGKILL)", registered=True)
        return young, restart_delay(nanny._young_deaths)

    young, delay = asyncio.run(main())
    assert young == 2 and delay == 0.0


def test_exit_0_counts_as_asked_to_close_only_after_worker_closing() -> None:
    nanny = _Recorder()
    assert nanny._worker_closing(None, pid=123, exit_code=0) == "OK"  # type: ignore[arg-type]
    assert nanny._closing == {123: 0}
