#!/usr/bin/env python3
"""Benchmark the shim's added cost: per stream chunk, per litellm call, and aggregator memory.

Run from the repository root with the project's interpreter:

    .venv/bin/python scripts/bench_shim.py            # full run, about two minutes
    .venv/bin/python scripts/bench_shim.py --quick    # fewer repeats, for a smoke test

It makes no network call: the litellm calls use ``mock_response``. Times are CPU seconds of this process
(``time.process_time``). It prints one line per figure and, as its last line, one JSON object whose keys
include:

- ``stream_chunk_overhead_us``: microseconds the stream proxy adds per chunk over bare iteration of
  prebuilt litellm chunks, the larger of the async and sync figures (target at most 0.5);
- ``mock_stream_ratio``: time of a ``litellm.acompletion(mock_response=..., stream=True)`` call read to
  the end, with the shim over without it (target at most 1.02);
- ``call_overhead_us``: microseconds the shim adds to a non-stream call, measured around stubs that
  return a real ``mock_response`` result (target at most 5). The end-to-end ``mock_response`` difference
  is printed too, as ``call_overhead_mock_us`` with its quartiles: litellm's own run time varies by more
  than the shim costs, so that figure only bounds the cost;
- ``aggregator_mb_per_million``: megabytes a default ``shim.Aggregator`` holds after 1,000,000 records,
  by tracemalloc (target at most 50).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import litellm  # noqa: E402
import wrapt  # noqa: E402
from litellm.types.utils import Delta, ModelResponseStream, StreamingChoices, Usage  # noqa: E402

import shim  # noqa: E402
from shim.calls import Call  # noqa: E402
from shim.records import Api, Source, UsageRecord  # noqa: E402
from shim.streams import wrap_stream  # noqa: E402
from shim.wrappers import make_async_wrapper, make_sync_wrapper  # noqa: E402

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
WORDS = ("amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper")
# mock_response streams 3 characters per chunk, so this text gives about 1,000 chunks per call.
LONG_TEXT = " ".join(WORDS[(i * 7) % len(WORDS)] for i in range(500))[:3000]

# CPU time of this process: load from other processes on the machine inflates it far less than wall time.
# It includes litellm's own background threads, on both sides of every comparison.
CLOCK = time.process_time

TARGETS = {
    "stream_chunk_overhead_us": 0.5,
    "mock_stream_ratio": 1.02,
    "call_overhead_us": 5.0,
    "aggregator_mb_per_million": 50.0,
}


# ----- prebuilt chunks behind a minimal stream ----------------------------------------------------------------


def build_chunks(count: int) -> list[ModelResponseStream]:
    """Return ``count`` content chunks and a trailing usage chunk, as a provider's stream would send."""
    chunks = [
        ModelResponseStream(
            id="chatcmpl-bench",
            model=MODEL,
            choices=[StreamingChoices(index=0, delta=Delta(content=WORDS[i % len(WORDS)] + " "))],
        )
        for i in range(count)
    ]
    usage = Usage(prompt_tokens=20, completion_tokens=count, total_tokens=20 + count)
    chunks.append(ModelResponseStream(id="chatcmpl-bench", model=MODEL, choices=[], usage=usage))
    return chunks


class AsyncChunkSource:
    """Minimal async stream over prebuilt chunks (no close, no context manager)."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: list) -> None:
        self._chunks = iter(chunks)

    def __aiter__(self) -> AsyncChunkSource:
        return self

    async def __anext__(self):
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None


class SyncChunkSource:
    """Minimal sync stream over prebuilt chunks."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: list) -> None:
        self._chunks = iter(chunks)

    def __iter__(self) -> SyncChunkSource:
        return self

    def __next__(self):
        return next(self._chunks)


def new_call() -> Call:
    return Call(Api.CHAT_COMPLETIONS, (), {"model": MODEL, "messages": MESSAGES, "stream": True}, time.time(), None)


async def time_async_stream(chunks: list, proxied: bool) -> float:
    source = AsyncChunkSource(chunks)
    stream = wrap_stream(source, new_call()) if proxied else source
    start = CLOCK()
    async for _ in stream:
        pass
    return CLOCK() - start


def time_sync_stream(chunks: list, proxied: bool) -> float:
    source = SyncChunkSource(chunks)
    stream = wrap_stream(source, new_call()) if proxied else source
    start = CLOCK()
    for _ in stream:
        pass
    return CLOCK() - start


def chunk_overhead(chunks: list, repeats: int) -> dict[str, float]:
    """Return the median added microseconds per chunk of the proxy, async and sync.

    Bare and proxied runs alternate so that drift of the machine affects both alike. Each proxied run
    includes the call's finalisation at the end of the stream (usage read from the last chunk, cost looked
    up), spread over all chunks. The minimal stream has no ``chunks`` list, so the proxy keeps the chunks
    itself. litellm's streams keep that list themselves, so there the proxy does a little less per chunk.
    """
    async_bare, async_proxy, sync_bare, sync_proxy = [], [], [], []
    with asyncio.Runner() as runner:
        for _ in range(repeats):
            gc.collect()
            async_bare.append(runner.run(time_async_stream(chunks, False)))
            async_proxy.append(runner.run(time_async_stream(chunks, True)))
            sync_bare.append(time_sync_stream(chunks, False))
            sync_proxy.append(time_sync_stream(chunks, True))
    count = len(chunks)
    return {
        "async_bare_us": statistics.median(async_bare) / count * 1e6,
        "async_overhead_us": (statistics.median(async_proxy) - statistics.median(async_bare)) / count * 1e6,
        "sync_bare_us": statistics.median(sync_bare) / count * 1e6,
        "sync_overhead_us": (statistics.median(sync_proxy) - statistics.median(sync_bare)) / count * 1e6,
    }


# ----- litellm calls with mock_response, with and without the shim ---------------------------------------------------


async def mock_stream_call(acompletion: Callable) -> int:
    stream = await acompletion(model=MODEL, messages=MESSAGES, mock_response=LONG_TEXT, stream=True)
    count = 0
    async for _ in stream:
        count += 1
    return count


async def mock_plain_call(acompletion: Callable) -> None:
    await acompletion(model=MODEL, messages=MESSAGES, mock_response="A short answer.")


async def time_batches(with_shim: Callable, without: Callable, pairs: int, batch: int, make_call: Callable) -> list:
    """Time ``pairs`` pairs of batches of ``batch`` calls, one batch per side; return seconds per call.

    The order inside a pair alternates, so that litellm's background work (its logging threads run after
    each call) and any drift of the machine fall on both sides alike. Returns (without, with) per pair.
    """
    # Sides are distinguished by position because a wrapt FunctionWrapper compares and hashes equal to its
    # original.
    results = []
    for number in range(pairs):
        order = ((0, without), (1, with_shim)) if number % 2 == 0 else ((1, with_shim), (0, without))
        durations = [0.0, 0.0]
        for side, function in order:
            start = CLOCK()
            for _ in range(batch):
                await make_call(function)
            durations[side] = (CLOCK() - start) / batch
        results.append((durations[0], durations[1]))
    return results


def compare_with_shim(make_call: Callable, pairs: int, batch: int) -> dict[str, float]:
    """Compare litellm.acompletion with the shim installed against its unwrapped original.

    Returns the median seconds per call on each side, the median of the per-pair differences and the
    25th and 75th percentiles of those differences (their spread shows how much noise the machine adds).
    Every record goes to an Aggregator, as a host's listener would.
    """
    aggregator = shim.Aggregator()
    key = shim.subscribe(aggregator, key="bench.aggregator")
    report = shim.install()
    if sorted(report.patched) != sorted(("acompletion", "completion", "aresponses", "responses")):
        raise RuntimeError(f"shim.install() did not patch litellm: {report}")
    wrapper = litellm.acompletion
    original = wrapper.__wrapped__
    try:
        # asyncio.Runner cancels litellm's logging task when it closes. A loop closed with that task still
        # pending made Python 3.11.7 crash with SIGSEGV at exit (litellm 1.110.2, without the shim too).
        with asyncio.Runner() as runner:
            runner.run(time_batches(wrapper, original, 2, 3, make_call))  # warm litellm's lazy imports
            gc.collect()
            results = runner.run(time_batches(wrapper, original, pairs, batch, make_call))
    finally:
        shim.uninstall()
        shim.unsubscribe(key)
    expected = 2 * 3 + pairs * batch
    if aggregator.total().calls != expected:
        raise RuntimeError(f"expected {expected} records, the aggregator got {aggregator.total().calls}")
    differences = sorted(with_shim - without for without, with_shim in results)
    quartiles = statistics.quantiles(differences, n=4)
    return {
        "without_s": statistics.median(without for without, _ in results),
        "with_s": statistics.median(with_shim for _, with_shim in results),
        "difference_s": statistics.median(differences),
        "difference_q1_s": quartiles[0],
        "difference_q3_s": quartiles[2],
    }


def isolated_call_overhead(repeats: int) -> dict[str, float]:
    """Return the median microseconds the shim's wrappers add around stubs that return a real ModelResponse.

    This removes litellm's own run time, and its noise, from the measurement. The stubs (one sync, one
    async) return a response made once by ``litellm.completion(mock_response=...)``, so the shim does all
    of its per-call work on a real object. That work is the start, the usage read, the cost from the
    hidden parameters, the record, and its delivery to an Aggregator listener.
    """
    response = litellm.completion(model=MODEL, messages=MESSAGES, mock_response="A short answer.")

    def sync_stub(model, messages, **kwargs):
        return response

    async def async_stub(model, messages, **kwargs):
        return response

    sync_wrapped = wrapt.FunctionWrapper(sync_stub, make_sync_wrapper(Api.CHAT_COMPLETIONS))
    async_wrapped = wrapt.FunctionWrapper(async_stub, make_async_wrapper(Api.CHAT_COMPLETIONS))
    calls = 20_000

    def run_sync(function) -> float:
        start = CLOCK()
        for _ in range(calls):
            function(model=MODEL, messages=MESSAGES)
        return CLOCK() - start

    async def run_async(function) -> float:
        start = CLOCK()
        for _ in range(calls):
            await function(model=MODEL, messages=MESSAGES)
        return CLOCK() - start

    aggregator = shim.Aggregator()
    key = shim.subscribe(aggregator, key="bench.isolated")
    runs: dict[str, list[float]] = {"sync_bare": [], "sync": [], "async_bare": [], "async": []}
    try:
        with asyncio.Runner() as runner:
            for _ in range(repeats):
                gc.collect()
                runs["sync_bare"].append(run_sync(sync_stub))
                runs["sync"].append(run_sync(sync_wrapped))
                runs["async_bare"].append(runner.run(run_async(async_stub)))
                runs["async"].append(runner.run(run_async(async_wrapped)))
    finally:
        shim.unsubscribe(key)
    median = {name: statistics.median(values) for name, values in runs.items()}
    return {
        "sync_us": (median["sync"] - median["sync_bare"]) / calls * 1e6,
        "async_us": (median["async"] - median["async_bare"]) / calls * 1e6,
    }


# ----- aggregator memory ----------------------------------------------------------------------------------------


def aggregator_memory(records: int, chats: int) -> dict[str, float]:
    """Feed ``records`` records spread over ``chats`` chats (3 scopes each) to a default Aggregator.

    Returns the memory the aggregator retains afterwards, measured by tracemalloc, and the records per
    second. tracemalloc slows allocation, so the rate is only a lower bound.
    """
    scopes = [
        {"context_id": f"ctx-{chat:05d}", "agent_no": agent, "role": role}
        for chat in range(chats)
        for agent, role in ((0, "chat"), (0, "utility"), (1, "chat"))
    ]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    aggregator = shim.Aggregator()
    start = CLOCK()
    for number in range(records):
        aggregator.add(
            UsageRecord(
                call_id=f"call-{number}",
                api=Api.CHAT_COMPLETIONS,
                stream=True,
                requested_model="openai/fake-model",
                prompt_tokens=1200,
                completion_tokens=300,
                total_tokens=1500,
                cached_tokens=200,
                cost=0.0012,
                source=Source.PROVIDER,
                scope=scopes[number % len(scopes)],
            )
        )
    elapsed = CLOCK() - start
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    groups = len(aggregator.groups())
    del aggregator
    return {"retained_mb": retained / 1e6, "groups": groups, "records_per_s": records / elapsed}


# ----- instruction counts under callgrind -------------------------------------------------------------------


CALLGRIND_COMMAND = (
    "valgrind --tool=callgrind --instr-atstart=no --dump-before=functools_reduce "
    "--dump-after=functools_reduce --callgrind-out-file=DIR/cg.out "
    ".venv/bin/python scripts/bench_shim.py --callgrind-phases > DIR/phases.json"
)


def callgrind_phases(calls: int, chunks: int, streams: int) -> list[tuple[str, int, Callable[[], object]]]:
    """Return (name, operations, run) for every phase: bare and shim side of each figure."""
    response = litellm.completion(model=MODEL, messages=MESSAGES, mock_response="A short answer.")

    def sync_stub(model, messages, **kwargs):
        return response

    async def async_stub(model, messages, **kwargs):
        return response

    sync_wrapped = wrapt.FunctionWrapper(sync_stub, make_sync_wrapper(Api.CHAT_COMPLETIONS))
    async_wrapped = wrapt.FunctionWrapper(async_stub, make_async_wrapper(Api.CHAT_COMPLETIONS))
    prebuilt = build_chunks(chunks - 1)
    runner = asyncio.Runner()

    def sync_calls(function) -> None:
        for _ in range(calls):
            function(model=MODEL, messages=MESSAGES)

    async def async_calls(function) -> None:
        for _ in range(calls):
            await function(model=MODEL, messages=MESSAGES)

    async def mock_streams(function) -> None:
        for _ in range(streams):
            await mock_stream_call(function)

    return [
        ("call_sync_bare", calls, lambda: sync_calls(sync_stub)),
        ("call_sync_shim", calls, lambda: sync_calls(sync_wrapped)),
        ("call_async_bare", calls, lambda: runner.run(async_calls(async_stub))),
        ("call_async_shim", calls, lambda: runner.run(async_calls(async_wrapped))),
        ("chunk_async_bare", chunks, lambda: runner.run(time_async_stream(prebuilt, False))),
        ("chunk_async_shim", chunks, lambda: runner.run(time_async_stream(prebuilt, True))),
        ("chunk_sync_bare", chunks, lambda: time_sync_stream(prebuilt, False)),
        ("chunk_sync_shim", chunks, lambda: time_sync_stream(prebuilt, True)),
        ("mock_stream_bare", streams, lambda: runner.run(mock_streams(litellm.acompletion.__wrapped__))),
        ("mock_stream_shim", streams, lambda: runner.run(mock_streams(litellm.acompletion))),
    ]


def run_callgrind_phases(calls: int = 2_000, chunks: int = 2_001, streams: int = 3) -> int:
    """Run every phase once inside its own ``functools.reduce`` call, for callgrind to count.

    Run under ``CALLGRIND_COMMAND``: callgrind then writes one profile part per phase (its
    ``--dump-after=functools_reduce``), and ``--read-callgrind`` turns the parts into instructions per
    operation. Instrumentation is switched on with ``callgrind_control`` only after litellm's import
    and a warm-up round, which makes the run take about a minute instead of five. The garbage
    collector is off while the phases run: its collections would land on either side at random.
    """
    aggregator = shim.Aggregator()
    key = shim.subscribe(aggregator, key="bench.callgrind")
    report = shim.install()
    if not report.ok:
        raise RuntimeError(f"shim.install() did not patch litellm: {report}")
    phases = callgrind_phases(calls, chunks, streams)
    for _, _, run in phases:
        run()
    gc.collect()
    gc.disable()
    control = subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL)
    while control.poll() is None:
        time.sleep(0.05)  # callgrind reads the command while this process runs, so poll instead of wait
    for _, _, run in phases:
        functools.reduce(lambda result, _: run(), range(1), None)
    gc.enable()
    shim.uninstall()
    shim.unsubscribe(key)
    print(json.dumps([[name, operations] for name, operations, _ in phases]))
    return 0


def read_callgrind(directory: Path) -> dict[str, float]:
    """Return the instructions the shim adds per operation, from the parts of a ``--callgrind-phases`` run."""
    phases = json.loads((directory / "phases.json").read_text().strip().splitlines()[-1])
    totals = []
    for part in sorted(directory.glob("cg.out.*"), key=lambda path: int(path.suffix[1:])):
        text = part.read_text()
        if "Trigger: --dump-after=functools_reduce" in text:
            totals.append(int(re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE).group(1)))
    counted = dict(zip((name for name, _ in phases), totals[-len(phases) :], strict=True))
    operations = dict(phases)
    figures = {}
    for name in counted:
        if name.endswith("_shim"):
            figure = name.removesuffix("_shim")
            bare = counted[f"{figure}_bare"] / operations[name]
            shim_side = counted[name] / operations[name]
            figures[f"{figure}_bare_instructions"] = round(bare)
            figures[f"{figure}_added_instructions"] = round(shim_side - bare)
        if name == "mock_stream_shim":
            figures["mock_stream_instruction_ratio"] = round(counted[name] / counted["mock_stream_bare"], 4)
    return figures


# ----- report -----------------------------------------------------------------------------------------------------


def environment() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "litellm": metadata.version("litellm"),
        "wrapt": metadata.version("wrapt"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and records (smoke test, noisier)")
    parser.add_argument(
        "--callgrind-phases",
        action="store_true",
        help=f"run the phases for an instruction count, under: {CALLGRIND_COMMAND}",
    )
    parser.add_argument(
        "--read-callgrind",
        metavar="DIR",
        type=Path,
        help="print the instructions per operation from the profile parts that --callgrind-phases left in DIR",
    )
    args = parser.parse_args(argv)
    if args.callgrind_phases:
        return run_callgrind_phases()
    if args.read_callgrind:
        figures = read_callgrind(args.read_callgrind)
        for name, value in figures.items():
            print(f"{name}: {value:,}")
        print(json.dumps(figures))
        return 0

    repeats = 5 if args.quick else 21
    stream_pairs = 10 if args.quick else 60
    plain_pairs, plain_batch = (20, 20) if args.quick else (60, 50)
    records = 100_000 if args.quick else 1_000_000

    print("environment:", json.dumps(environment()))

    chunks = build_chunks(5_000)
    overhead = chunk_overhead(chunks, repeats)
    print(
        f"stream proxy, per chunk: async bare {overhead['async_bare_us']:.3f} us, "
        f"added {overhead['async_overhead_us']:.3f} us; sync bare {overhead['sync_bare_us']:.3f} us, "
        f"added {overhead['sync_overhead_us']:.3f} us (median of {repeats} runs of {len(chunks):,} chunks)"
    )

    chunks_per_call = asyncio.run(mock_stream_call(litellm.acompletion))
    stream = compare_with_shim(mock_stream_call, stream_pairs, 1)
    ratio = stream["with_s"] / stream["without_s"]
    print(
        f"mock_response stream of {chunks_per_call} chunks: {stream['without_s'] * 1e3:.2f} ms without the shim, "
        f"{stream['with_s'] * 1e3:.2f} ms with it, ratio {ratio:.4f} (median of {stream_pairs} pairs)"
    )

    isolated = isolated_call_overhead(repeats)
    call_overhead = max(isolated["sync_us"], isolated["async_us"])
    print(
        f"non-stream call, wrappers around stubs returning a real ModelResponse: added "
        f"{isolated['sync_us']:.2f} us (sync), {isolated['async_us']:.2f} us (async) per call"
    )
    plain = compare_with_shim(mock_plain_call, plain_pairs, plain_batch)
    mock_call_overhead = plain["difference_s"] * 1e6
    print(
        f"mock_response non-stream call, end to end: {plain['without_s'] * 1e6:.1f} us without the shim, "
        f"{plain['with_s'] * 1e6:.1f} us with it; median paired difference {mock_call_overhead:.1f} us, "
        f"quartiles {plain['difference_q1_s'] * 1e6:.1f} to {plain['difference_q3_s'] * 1e6:.1f} us "
        f"({plain_pairs} paired batches of {plain_batch} calls)"
    )

    memory = aggregator_memory(records, chats=4_000)
    print(
        f"Aggregator after {records:,} records in {memory['groups']:,} groups: "
        f"{memory['retained_mb']:.2f} MB retained, {memory['records_per_s']:,.0f} records/s under tracemalloc"
    )
    if records != 1_000_000:
        print("note: --quick feeds fewer records, and aggregator_mb_per_million is the memory retained after them")

    figures = {
        "stream_chunk_overhead_us": round(max(overhead["async_overhead_us"], overhead["sync_overhead_us"]), 3),
        "mock_stream_ratio": round(ratio, 4),
        "call_overhead_us": round(call_overhead, 2),
        "aggregator_mb_per_million": round(memory["retained_mb"], 2),
        "stream_chunk_overhead_async_us": round(overhead["async_overhead_us"], 3),
        "stream_chunk_overhead_sync_us": round(overhead["sync_overhead_us"], 3),
        "call_overhead_sync_us": round(isolated["sync_us"], 2),
        "call_overhead_async_us": round(isolated["async_us"], 2),
        "call_overhead_mock_us": round(mock_call_overhead, 1),
        "call_overhead_mock_q1_us": round(plain["difference_q1_s"] * 1e6, 1),
        "call_overhead_mock_q3_us": round(plain["difference_q3_s"] * 1e6, 1),
        "mock_stream_chunks": chunks_per_call,
    }
    missed = [name for name, limit in TARGETS.items() if figures[name] > limit]
    print("targets missed:", ", ".join(missed) if missed else "none")
    print(json.dumps({**figures, "records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
