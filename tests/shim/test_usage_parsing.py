"""Reading token counts from usage objects: ``shim.usage.read_usage`` and the records built from it.

The first half feeds ``read_usage`` dicts, litellm objects and malformed values directly. The second half
sends malformed usage from the fake model server through real litellm and checks the record: a count the
provider did not report must be None (never a zero), and a malformed field must be flagged.
"""

from __future__ import annotations

import types

import litellm
import pytest
from litellm.types.llms.openai import ResponseAPIUsage
from litellm.types.utils import CompletionTokensDetailsWrapper, PromptTokensDetailsWrapper, Usage

from shim import Source
from shim.usage import TokenCounts, read_usage


def counts(prompt=None, completion=None, total=None, cached=None, reasoning=None, flags=()) -> TokenCounts:
    return TokenCounts(prompt, completion, total, cached, reasoning, tuple(flags))


CHAT_FULL = {
    "prompt_tokens": 10,
    "completion_tokens": 7,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
}
RESPONSES_FULL = {
    "input_tokens": 11,
    "output_tokens": 5,
    "total_tokens": 16,
    "input_tokens_details": {"cached_tokens": 3},
    "output_tokens_details": {"reasoning_tokens": 1},
}

DICT_CASES = [
    ("chat names", CHAT_FULL, counts(10, 7, 17, 4, 2)),
    ("responses names", RESPONSES_FULL, counts(11, 5, 16, 3, 1)),
    ("total computed", {"prompt_tokens": 3, "completion_tokens": 4}, counts(3, 4, 7)),
    ("details missing", {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, counts(3, 4, 7)),
    (
        "details None",
        {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": None, "completion_tokens_details": None},
        counts(3, 4, 7),
    ),
    ("detail fields None", {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": None}}, counts(3)),
    ("chat name wins", {"prompt_tokens": 5, "input_tokens": 9, "completion_tokens": 1}, counts(5, 1, 6)),
    ("responses name fills None", {"prompt_tokens": None, "input_tokens": 9}, counts(9)),
    ("all None", {"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}, counts()),
    ("empty", {}, counts()),
    ("only total", {"total_tokens": 25}, counts(total=25)),
    ("prompt missing", {"completion_tokens": 5, "total_tokens": 9}, counts(None, 5, 9)),
    (
        "negative prompt",
        {"prompt_tokens": -5, "completion_tokens": 3},
        counts(None, 3, None, flags=["prompt_tokens:negative"]),
    ),
    (
        "negative everywhere",
        {
            "prompt_tokens": -5,
            "completion_tokens": -20,
            "total_tokens": -25,
            "prompt_tokens_details": {"cached_tokens": -1},
            "completion_tokens_details": {"reasoning_tokens": -5},
        },
        counts(
            flags=[
                "prompt_tokens:negative",
                "completion_tokens:negative",
                "total_tokens:negative",
                "cached_tokens:negative",
                "reasoning_tokens:negative",
            ]
        ),
    ),
    (
        "negative responses names",
        {"input_tokens": -1, "output_tokens": 2},
        counts(None, 2, flags=["input_tokens:negative"]),
    ),
    (
        "digit strings",
        {"prompt_tokens": "12", "completion_tokens": " 7 "},
        counts(12, 7, 19, flags=["prompt_tokens:string", "completion_tokens:string"]),
    ),
    ("word string", {"prompt_tokens": "twelve"}, counts(flags=["prompt_tokens:string"])),
    ("negative string", {"prompt_tokens": "-3"}, counts(flags=["prompt_tokens:string"])),
    ("empty string", {"prompt_tokens": ""}, counts(flags=["prompt_tokens:string"])),
    (
        "string detail",
        {"prompt_tokens": 8, "prompt_tokens_details": {"cached_tokens": "2"}},
        counts(8, cached=2, flags=["cached_tokens:string"]),
    ),
    (
        "booleans",
        {"prompt_tokens": True, "completion_tokens": False},
        counts(flags=["prompt_tokens:invalid", "completion_tokens:invalid"]),
    ),
    ("integral floats", {"prompt_tokens": 12.0, "completion_tokens": 3.0}, counts(12, 3, 15)),
    (
        "fractional float",
        {"prompt_tokens": 12.5, "completion_tokens": 3},
        counts(None, 3, flags=["prompt_tokens:invalid"]),
    ),
    ("negative float", {"prompt_tokens": -4.0}, counts(flags=["prompt_tokens:negative"])),
    ("nan", {"prompt_tokens": float("nan")}, counts(flags=["prompt_tokens:invalid"])),
    ("infinity", {"prompt_tokens": float("inf")}, counts(flags=["prompt_tokens:invalid"])),
    ("list value", {"prompt_tokens": [3]}, counts(flags=["prompt_tokens:invalid"])),
    ("dict value", {"total_tokens": {"value": 3}}, counts(flags=["total_tokens:invalid"])),
    ("large count", {"prompt_tokens": 10**12, "completion_tokens": 1}, counts(10**12, 1, 10**12 + 1)),
    ("all zero", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, counts(0, 0, 0)),
]


@pytest.mark.parametrize(("usage", "expected"), [case[1:] for case in DICT_CASES], ids=[c[0] for c in DICT_CASES])
def test_read_usage_dict(usage, expected):
    assert read_usage(usage) == expected


@pytest.mark.parametrize(
    ("usage", "reported"),
    [
        (None, False),
        ({}, False),
        ({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, False),
        ({"prompt_tokens": None, "completion_tokens": None}, False),
        ({"prompt_tokens": -5, "completion_tokens": -1, "total_tokens": -6}, False),
        (
            {
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
            False,
        ),
        ({"prompt_tokens": 1}, True),
        ({"completion_tokens": 1}, True),
        ({"total_tokens": 1}, True),
        ({"input_tokens": 2, "output_tokens": 0}, True),
    ],
    ids=[
        "none",
        "empty",
        "all zero",
        "all None",
        "all negative",
        "zero with cached",
        "prompt",
        "completion",
        "total",
        "input",
    ],
)
def test_reported_needs_positive_count(usage, reported):
    assert read_usage(usage).reported is reported


def test_read_usage_none():
    assert read_usage(None) == counts()


def test_read_usage_litellm_usage():
    usage = Usage(
        prompt_tokens=10,
        completion_tokens=7,
        total_tokens=17,
        prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=4),
        completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=2),
    )

    result = read_usage(usage)

    assert result == counts(10, 7, 17, 4, 2)
    assert result.reported is True


def test_read_usage_litellm_zero_usage():
    result = read_usage(Usage())

    assert result == counts(0, 0, 0)
    assert result.reported is False


def test_read_usage_litellm_usage_without_details():
    assert read_usage(Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)) == counts(3, 2, 5)


def test_read_usage_responses_api_usage():
    usage = ResponseAPIUsage(
        input_tokens=11,
        output_tokens=5,
        total_tokens=16,
        input_tokens_details={"cached_tokens": 3},
        output_tokens_details={"reasoning_tokens": 1},
    )

    assert read_usage(usage) == counts(11, 5, 16, 3, 1)


def test_read_usage_responses_api_usage_without_details():
    usage = ResponseAPIUsage(input_tokens=4, output_tokens=6, total_tokens=10)

    assert read_usage(usage) == counts(4, 6, 10)


def test_read_usage_plain_object():
    usage = types.SimpleNamespace(
        prompt_tokens=9,
        completion_tokens=2,
        prompt_tokens_details=types.SimpleNamespace(cached_tokens=1),
        completion_tokens_details=None,
    )

    assert read_usage(usage) == counts(9, 2, 11, 1)


def test_read_usage_broken_property():
    class BrokenUsage:
        completion_tokens = 4

        @property
        def prompt_tokens(self):
            raise RuntimeError("property failed on purpose")

    assert read_usage(BrokenUsage()) == counts(None, 4)


@pytest.mark.parametrize(
    "usage", ["12 tokens", 42, 3.5, [1, 2], object()], ids=["str", "int", "float", "list", "object"]
)
def test_read_usage_foreign_type(usage):
    result = read_usage(usage)

    assert result == counts()
    assert result.reported is False


# ----- malformed usage from the fake server, through litellm ----------------------------------------------------


MESSAGES = [{"role": "user", "content": "Count the rings of a cedar."}]


def call_chat(server, directives: str):
    return litellm.completion(
        model=f"openai/fake-model@{directives}",
        messages=MESSAGES,
        api_base=server.base_url,
        api_key="fake-key",
    )


def call_responses(server, directives: str):
    return litellm.responses(
        model=f"openai/fake-model@{directives}",
        input=MESSAGES[0]["content"],
        api_base=server.base_url,
        api_key="fake-key",
    )


def assert_no_counts(record) -> None:
    assert record.source is Source.UNAVAILABLE
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.total_tokens is None
    assert record.cached_tokens is None
    assert record.reasoning_tokens is None


@pytest.mark.parametrize(
    "directives",
    ["usage=never", "malformed=none", "prompt_tokens=0,completion_tokens=0,cached_tokens=0,reasoning_tokens=0"],
    ids=["never", "all None", "all zero"],
)
def test_chat_without_usage_has_no_zeros(records, fake_server, directives):
    call_chat(fake_server, directives)

    record = records.only()
    assert record.source_reason == "provider sent no usage"
    assert_no_counts(record)


@pytest.mark.parametrize("directives", ["usage=never", "malformed=none"], ids=["never", "all None"])
def test_responses_without_usage_has_no_zeros(records, fake_server, directives):
    call_responses(fake_server, directives)

    assert_no_counts(records.only())


@pytest.mark.parametrize("call", [call_chat, call_responses], ids=["chat", "responses"])
def test_negative_usage_is_flagged(records, fake_server, call):
    call(fake_server, "malformed=negative")

    record = records.only()
    assert_no_counts(record)
    assert any(flag.endswith("_tokens:negative") for flag in record.flags)
    assert len(record.flags) == 5


@pytest.mark.parametrize("call", [call_chat, call_responses], ids=["chat", "responses"])
def test_string_usage_is_read(records, fake_server, call):
    call(fake_server, "malformed=string")

    sent = fake_server.requests[-1]["usage"]
    record = records.only()
    assert record.source is Source.PROVIDER
    assert record.total_tokens == int(sent["total_tokens"])
    assert record.prompt_tokens == int(sent.get("prompt_tokens", sent.get("input_tokens")))
    assert record.completion_tokens == int(sent.get("completion_tokens", sent.get("output_tokens")))


@pytest.mark.parametrize("call", [call_chat, call_responses], ids=["chat", "responses"])
def test_missing_counts_stay_unknown(records, fake_server, call):
    call(fake_server, "malformed=missing")

    sent = fake_server.requests[-1]["usage"]
    assert sorted(sent) == ["total_tokens"]
    record = records.only()
    assert record.total_tokens == sent["total_tokens"]
    assert record.prompt_tokens is None, "the provider sent no prompt count"
    assert record.completion_tokens is None, "the provider sent no completion count"
