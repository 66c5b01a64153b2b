"""The orderly stop: one per process, hurried (never interrupted) by later signals."""

from __future__ import annotations

import io
import os
import signal
import threading

import pytest

from agehpo.hpo.stopping import OrderlyStop, Terminated, watch_supervisor

WAIT_S = 30  # only a broken test waits this long


class _Exit:
    """Records the hard exit instead of ending the test process."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


def test_the_first_signal_decides_the_exit_code_and_the_exception() -> None:
    stop = OrderlyStop(hard_exit=_Exit())
    stop.check()  # nothing requested: no exception
    assert stop.exit_code == 0
    stop.request(signal.SIGINT)
    stop.request(signal.SIGTERM)
    assert stop.exit_code == 130
    with pytest.raises(KeyboardInterrupt) as raised:
        stop.check()
    assert not isinstance(raised.value, Terminated)
    stop.done()

    term = OrderlyStop(hard_exit=_Exit())
    term.request(signal.SIGTERM)
    assert term.exit_code == 143
    assert isinstance(term.exception(), Terminated)
    term.done()


def _watchdog(stop: OrderlyStop) -> threading.Thread:
    assert stop.watchdog is not None
    return stop.watchdog


def test_a_stop_that_finishes_in_time_is_not_cut_short() -> None:
    hard_exit = _Exit()
    stop = OrderlyStop(deadline_s=3600, hard_exit=hard_exit)
    stop.request(signal.SIGTERM)
    stop.done()
    _watchdog(stop).join(WAIT_S)
    assert not _watchdog(stop).is_alive() and not hard_exit.called.is_set()


def test_a_stuck_stop_exits_at_its_deadline_with_one_line() -> None:
    hard_exit, err = _Exit(), io.StringIO()
    stop = OrderlyStop(deadline_s=0, hard_exit=hard_exit, err=err)
    stop.request(signal.SIGTERM)
    _watchdog(stop).join(WAIT_S)
    assert hard_exit.codes == [143]
    assert err.getvalue() == (
        "agehpo: the stop (SIGTERM) did not finish within its deadline; exiting. "
        "Trials left RUNNING are failed and retried by the next run.\n"
    )


def test_the_deadline_runs_on_the_clock() -> None:
    now = [100.0]
    hard_exit = _Exit()
    stop = OrderlyStop(deadline_s=5, hurry_s=3, clock=lambda: now[0], hard_exit=hard_exit)
    stop.request(signal.SIGTERM)
    now[0] = 106.0  # past the deadline: the next wake-up (a later signal) exits at once
    stop.request(signal.SIGTERM)
    _watchdog(stop).join(WAIT_S)
    assert hard_exit.codes == [143]


def test_a_second_signal_shortens_the_deadline_and_never_restarts_it() -> None:
    now = [100.0]
    hard_exit = _Exit()
    stop = OrderlyStop(deadline_s=3600, hurry_s=3, clock=lambda: now[0], hard_exit=hard_exit)
    stop.request(signal.SIGINT)
    now[0] = 3000.0
    stop.request(signal.SIGINT)  # hurry: 3 s from now, within the hour
    assert not hard_exit.called.is_set()
    now[0] = 3003.5
    stop.request(signal.SIGINT)  # 3 s from now would be later than the deadline: kept
    _watchdog(stop).join(WAIT_S)
    assert hard_exit.codes == [130]


def test_installed_handlers_turn_signals_into_requests_and_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = OrderlyStop(hard_exit=_Exit())
    previous = stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test process unhandled
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt unhandled
        assert stop.requested.is_set()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stop.done()
    assert stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_dead_supervisor_stops_the_run_as_sigterm() -> None:
    parents = iter([4242, 4242, 1])
    stop = OrderlyStop(hard_exit=_Exit())
    thread = watch_supervisor(stop, poll_s=0.01, getppid=lambda: next(parents, 1))
    thread.join(WAIT_S)
    assert stop.requested.is_set() and stop.supervisor_died
    assert stop.exit_code == 143
    assert "4242" in stop.reason
    stop.done()
