"""The orderly stop: one per process, hurried (never interrupted) by later signals."""

from __future__ import annotations

import io
import os
import signal
import threading

import pytest

from agehpo.hpo.stopping import OrderlyStop, Terminated, watch_supervisor


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


def test_a_stop_that_finishes_in_time_is_not_cut_short() -> None:
    hard_exit = _Exit()
    stop = OrderlyStop(deadline_s=0.3, hard_exit=hard_exit)
    stop.request(signal.SIGTERM)
    stop.done()
    assert not hard_exit.called.wait(0.6)


def test_a_stuck_stop_exits_at_its_deadline_with_one_line() -> None:
    hard_exit, err = _Exit(), io.StringIO()
    stop = OrderlyStop(deadline_s=0.2, hard_exit=hard_exit, err=err)
    stop.request(signal.SIGTERM)
    assert hard_exit.called.wait(5)
    assert hard_exit.codes == [143]
    assert len(err.getvalue().splitlines()) == 1
    assert "retried by the next run" in err.getvalue()


def test_a_second_signal_shortens_the_deadline_and_never_restarts_it() -> None:
    now = [100.0]
    hard_exit = _Exit()
    stop = OrderlyStop(deadline_s=3600, hurry_s=0.0, clock=lambda: now[0], hard_exit=hard_exit)
    stop.request(signal.SIGINT)
    assert not hard_exit.called.wait(0.2)  # an hour left
    stop.request(signal.SIGINT)  # hurry: no time left at all
    assert hard_exit.called.wait(5)
    assert hard_exit.codes == [130]


def test_installed_handlers_turn_signals_into_requests_and_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = OrderlyStop(hard_exit=_Exit())
    with stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test process unhandled
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt unhandled
        assert stop.requested.is_set()
    stop.done()
    assert stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_dead_supervisor_stops_the_run_as_sigterm() -> None:
    parents = iter([4242, 4242, 1])
    stop = OrderlyStop(hard_exit=_Exit())
    thread = watch_supervisor(stop, poll_s=0.01, getppid=lambda: next(parents, 1))
    thread.join(5)
    assert stop.requested.is_set() and stop.supervisor_died
    assert stop.exit_code == 143
    assert "4242" in stop.reason
    stop.done()
