"""Lockout's rules alone: no database, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.lockout.domain import EVERY_SOURCE, Failure, Lock, Policy, count, decide, standing

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(max_failures=5, max_failures_account=20, window_seconds=900, lock_seconds=900)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def failures(source: str, *seconds: float) -> list[Failure]:
    return [Failure(source, at(s)) for s in seconds]


def test_window_counts_only_failures_younger_than_window_seconds() -> None:
    history = failures("a", 0, 100, 899, 900)
    assert count(POLICY, history, at=at(900), source="a") == 3  # the one at exactly 900 s ago has left
    assert count(POLICY, history, at=at(1799), source="a") == 1
    assert count(POLICY, history, at=at(1800), source="a") == 0


def test_window_ignores_failures_later_than_the_event_being_decided() -> None:
    assert count(POLICY, failures("a", 0, 10, 20), at=at(10), source="a") == 2


def test_source_count_ignores_other_sources_and_account_count_sums_them() -> None:
    history = failures("a", 1, 2) + failures("b", 3)
    assert count(POLICY, history, at=at(3), source="a") == 2
    assert count(POLICY, history, at=at(3), source=EVERY_SOURCE) == 3


def test_fourth_failure_from_a_source_locks_nothing() -> None:
    assert decide(POLICY, failures("a", 1, 2, 3, 4), {}, at=at(4), source="a") == []


def test_fifth_failure_from_one_source_locks_that_source_for_lock_seconds() -> None:
    assert decide(POLICY, failures("a", 1, 2, 3, 4, 5), {}, at=at(5), source="a") == [
        Lock("a", locked_at=at(5), locked_until=at(905), failures=5)]


def test_failures_spread_beyond_the_window_never_lock() -> None:
    spread = failures("a", 0, 300, 600, 900, 1200)
    assert decide(POLICY, spread, {}, at=at(1200), source="a") == []


def test_twentieth_failure_over_all_sources_locks_every_source() -> None:
    history = [Failure(f"10.0.0.{i}", at(i)) for i in range(20)]  # one failure each: no source reaches 5
    assert decide(POLICY, history, {}, at=at(19), source="10.0.0.19") == [
        Lock(EVERY_SOURCE, locked_at=at(19), locked_until=at(919), failures=20)]


def test_one_failure_can_reach_both_bounds_at_once() -> None:
    policy = Policy(max_failures=3, max_failures_account=3)
    assert [lock.source for lock in decide(policy, failures("a", 1, 2, 3), {}, at=at(3), source="a")] == ["a", EVERY_SOURCE]


def test_failures_while_a_lock_is_active_lock_nothing_again() -> None:
    active = {"a": Lock("a", at(5), at(905), 5)}
    assert decide(POLICY, failures("a", 1, 2, 3, 4, 5, 6, 7), active, at=at(7), source="a") == []


def test_failures_that_caused_a_lock_do_not_cause_the_next_once_it_ends() -> None:
    short = Policy(max_failures=5, lock_seconds=2)
    ended = {"a": Lock("a", at(5), at(7), 5)}
    assert decide(short, failures("a", 1, 2, 3, 4, 5, 8), ended, at=at(8), source="a") == []


def test_failures_during_a_lock_count_toward_the_next_one() -> None:
    short = Policy(max_failures=5, lock_seconds=2)
    ended = {"a": Lock("a", at(5), at(7), 5)}
    history = failures("a", 1, 2, 3, 4, 5, 6, 6.5, 8, 9, 10)
    assert decide(short, history, ended, at=at(10), source="a") == [Lock("a", at(10), at(12), 5)]


def test_a_lifted_lock_no_longer_holds_back_a_new_one() -> None:
    lifted = {"a": Lock("a", at(5), at(905), 5, lifted_at=at(6))}
    assert [lock.source for lock in decide(POLICY, failures("a", 7, 8, 9, 10, 11), lifted, at=at(11), source="a")] == ["a"]


def test_standing_reports_active_locks_and_failures_in_window() -> None:
    locks = [Lock("b", at(5), at(905), 5), Lock("a", at(5), at(905), 5), Lock("c", at(0), at(4), 5),
             Lock(EVERY_SOURCE, at(6), at(906), 20, lifted_at=at(7))]
    seen = standing(POLICY, failures("a", 1, 2) + failures("b", 3), locks, now=at(10))
    assert (seen.locked, seen.locked_until, seen.failures_in_window) == (True, at(905), 3)
    assert (seen.locked_sources, seen.every_source_locked) == (["a", "b"], False)


def test_standing_of_an_untouched_account_is_unlocked() -> None:
    seen = standing(POLICY, [], [], now=at(0))
    assert (seen.locked, seen.locked_until, seen.failures_in_window, seen.locked_sources) == (False, None, 0, [])
