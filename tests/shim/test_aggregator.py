"""The bounded in-memory Aggregator: totals per group, the overflow group, the recent list, threads."""

from __future__ import annotations

import threading

import litellm
import pytest

import shim
from shim import Aggregator, Api, Source, Totals, UsageRecord, totals_of


def make_record(
    number: int,
    *,
    scope: dict | None = None,
    prompt: int | None = 10,
    completion: int | None = 5,
    cached: int | None = 2,
    reasoning: int | None = 1,
    cost: float | None = 0.25,
    source: Source = Source.PROVIDER,
) -> UsageRecord:
    total = prompt + completion if prompt is not None and completion is not None else None
    return UsageRecord(
        call_id=f"call-{number}",
        api=Api.CHAT_COMPLETIONS,
        stream=False,
        requested_model="openai/fake-model",
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        cost=cost,
        source=source,
        scope=scope or {},
    )


def group_key(**attributes) -> tuple:
    """Return the default group key of a record whose scope is ``attributes``."""
    return tuple(sorted((str(k), str(v)) for k, v in attributes.items()))


# ----- totals ------------------------------------------------------------------------------------------------


def test_totals_per_group():
    aggregator = Aggregator()
    for number in range(3):
        aggregator.add(make_record(number, scope={"chat": "a"}))
    aggregator.add(make_record(3, scope={"chat": "b"}, prompt=100, completion=50, cached=None, reasoning=7, cost=1.5))

    groups = aggregator.groups()

    assert set(groups) == {group_key(chat="a"), group_key(chat="b")}
    a = groups[group_key(chat="a")]
    assert a == Totals(
        calls=3,
        prompt_tokens=30,
        completion_tokens=15,
        total_tokens=45,
        cached_tokens=6,
        reasoning_tokens=3,
        cost=0.75,
    )
    b = groups[group_key(chat="b")]
    assert (b.calls, b.prompt_tokens, b.completion_tokens, b.total_tokens) == (1, 100, 50, 150)
    assert (b.cached_tokens, b.reasoning_tokens, b.cost) == (0, 7, 1.5)
    assert aggregator.total() == totals_of(
        [make_record(n, scope={"chat": "a"}) for n in range(3)]
        + [make_record(3, scope={"chat": "b"}, prompt=100, completion=50, cached=None, reasoning=7, cost=1.5)]
    )


def test_group_key_ignores_attribute_order():
    aggregator = Aggregator()
    aggregator.add(make_record(1, scope={"chat": "a", "role": "chat"}))
    aggregator.add(make_record(2, scope={"role": "chat", "chat": "a"}))
    aggregator.add(make_record(3))

    groups = aggregator.groups()

    assert groups[group_key(chat="a", role="chat")].calls == 2
    assert groups[()].calls == 1


def test_unknown_numbers_are_counted_not_added():
    aggregator = Aggregator()
    aggregator.add(
        make_record(1, prompt=None, completion=None, cached=None, reasoning=None, cost=None, source=Source.UNAVAILABLE)
    )
    aggregator.add(make_record(2, prompt=40, completion=8, cost=None, source=Source.ESTIMATED))
    aggregator.add(make_record(3))

    total = aggregator.total()

    assert total.calls == 3
    assert total.calls_without_usage == 1
    assert total.estimated_calls == 1
    assert total.unpriced_calls == 2
    assert total.prompt_tokens == 50
    assert total.completion_tokens == 13
    assert total.total_tokens == 63
    assert total.cost == pytest.approx(0.25)


def test_custom_group_by():
    aggregator = Aggregator(group_by=lambda record: record.requested_model)
    aggregator.add(make_record(1, scope={"chat": "a"}))
    aggregator.add(make_record(2, scope={"chat": "b"}))

    assert list(aggregator.groups()) == ["openai/fake-model"]
    assert aggregator.groups()["openai/fake-model"].calls == 2


def test_returned_totals_are_copies():
    aggregator = Aggregator()
    aggregator.add(make_record(1, scope={"chat": "a"}))

    aggregator.total().calls = 99
    aggregator.groups()[group_key(chat="a")].calls = 99

    assert aggregator.total().calls == 1
    assert aggregator.groups()[group_key(chat="a")].calls == 1


def test_clear_forgets_everything():
    aggregator = Aggregator()
    for number in range(5):
        aggregator.add(make_record(number, scope={"chat": str(number)}))

    aggregator.clear()

    assert aggregator.total() == Totals()
    assert aggregator.groups() == {}
    assert aggregator.recent() == []


@pytest.mark.parametrize(("max_recent", "max_groups"), [(-1, 10), (10, 0)])
def test_invalid_limits_raise(max_recent, max_groups):
    with pytest.raises(ValueError, match="max_recent"):
        Aggregator(max_recent=max_recent, max_groups=max_groups)


# ----- the overflow group -----------------------------------------------------------------------------------------


def test_overflow_group_keeps_grand_total():
    aggregator = Aggregator(max_groups=3)
    records = [make_record(number, scope={"chat": f"c{number % 6}"}, prompt=number + 1) for number in range(60)]
    for record in records:
        aggregator.add(record)

    groups = aggregator.groups()
    expected = totals_of(records)

    assert aggregator.total() == expected
    assert sum(t.calls for t in groups.values()) == 60
    assert sum(t.prompt_tokens for t in groups.values()) == expected.prompt_tokens
    assert sum(t.cost for t in groups.values()) == pytest.approx(expected.cost)
    named = {key: totals for key, totals in groups.items() if key is not None}
    assert 1 <= len(named) < 6
    assert all(totals.calls == 10 for totals in named.values())
    assert groups[None].calls == 60 - 10 * len(named)


def test_overflow_keeps_existing_groups():
    aggregator = Aggregator(max_groups=3)
    for number, chat in enumerate(["a", "b", "c", "d", "e", "a", "b"]):
        aggregator.add(make_record(number, scope={"chat": chat}))

    groups = aggregator.groups()

    assert groups[group_key(chat="a")].calls == 2
    assert groups[group_key(chat="b")].calls == 2
    assert group_key(chat="d") not in groups
    assert group_key(chat="e") not in groups
    assert groups[None].calls in (2, 3)


@pytest.mark.parametrize("max_groups", [1, 2, 5])
def test_group_count_within_max_groups(max_groups):
    aggregator = Aggregator(max_groups=max_groups)
    for number in range(max_groups + 10):
        aggregator.add(make_record(number, scope={"chat": f"c{number}"}))

    groups = aggregator.groups()

    assert sum(t.calls for t in groups.values()) == max_groups + 10
    assert len(groups) <= max_groups, f"{len(groups)} Totals kept with max_groups={max_groups}"


# ----- the recent list --------------------------------------------------------------------------------------------


def test_recent_list_bounded():
    aggregator = Aggregator(max_recent=5)
    records = [make_record(number) for number in range(12)]
    for record in records:
        aggregator.add(record)

    recent = aggregator.recent()

    assert [r.call_id for r in recent] == [f"call-{n}" for n in range(7, 12)]
    assert aggregator.total().calls == 12


def test_recent_list_disabled():
    aggregator = Aggregator(max_recent=0)
    aggregator.add(make_record(1))

    assert aggregator.recent() == []
    assert aggregator.total().calls == 1


# ----- threads and the shim ---------------------------------------------------------------------------------------


def test_concurrent_adds_are_exact():
    aggregator = Aggregator(max_recent=10, max_groups=4)
    threads_count, per_thread = 8, 5_000
    start = threading.Barrier(threads_count)

    def add_many(thread_number: int) -> None:
        start.wait()
        for number in range(per_thread):
            aggregator.add(make_record(number, scope={"chat": f"t{thread_number}"}, prompt=1, completion=2))

    threads = [threading.Thread(target=add_many, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = aggregator.total()
    groups = aggregator.groups()
    assert total.calls == threads_count * per_thread
    assert total.total_tokens == 3 * threads_count * per_thread
    assert sum(t.calls for t in groups.values()) == threads_count * per_thread
    assert len(aggregator.recent()) == 10


async def test_aggregator_as_listener(records, fake_server):
    aggregator = Aggregator()
    key = shim.subscribe(aggregator, key="tests.aggregator")
    try:
        for chat, count in (("a", 2), ("b", 3)):
            with shim.scope(chat=chat):
                for number in range(count):
                    stream = await litellm.acompletion(
                        model=f"openai/agg-{chat}-{number}@usage=finish,chunks={2 + number}",
                        messages=[{"role": "user", "content": f"chat {chat} call {number}"}],
                        api_base=fake_server.base_url,
                        api_key="fake-key",
                        stream=True,
                    )
                    async for _ in stream:
                        pass
    finally:
        shim.unsubscribe(key)

    records.wait_for(5)
    sent = {entry["model"]: entry["usage"] for entry in fake_server.requests}
    groups = aggregator.groups()
    for chat in ("a", "b"):
        usages = [usage for model, usage in sent.items() if model.startswith(f"agg-{chat}-")]
        group = groups[group_key(chat=chat)]
        assert group.calls == len(usages)
        assert group.prompt_tokens == sum(u["prompt_tokens"] for u in usages)
        assert group.completion_tokens == sum(u["completion_tokens"] for u in usages)
        assert group.reasoning_tokens == sum(u["completion_tokens_details"]["reasoning_tokens"] for u in usages)
    assert aggregator.total().calls == 5
    assert aggregator.total().total_tokens == sum(u["total_tokens"] for u in sent.values())
