"""The nanny's pure helpers: death reasons and the restart back-off."""

from __future__ import annotations

from shoal.nanny import BACKOFF_FIRST, BACKOFF_MAX, death_reason, restart_delay


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
