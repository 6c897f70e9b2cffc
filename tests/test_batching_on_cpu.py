"""MicroBatcher: the one micro-batcher of the hf_cpu rollout, its reward server and the local scorer."""

import asyncio
import doctest
import threading

import pytest

from rlsf_verl import batching
from rlsf_verl.batching import MicroBatcher


class Recorder:
    """A batch function that records each call and answers ``(request, call number)``."""

    def __init__(self, release: threading.Event | None = None):
        self.calls: list[list] = []
        self.release = release
        self.started = threading.Event()

    def __call__(self, requests):
        self.calls.append(list(requests))
        self.started.set()
        if self.release is not None:
            self.release.wait(timeout=30)
        return [(request, len(self.calls)) for request in requests]


def ask(batcher, requests):
    async def all_at_once():
        return await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)

    return asyncio.run(all_at_once())


def test_docstring_example_runs():
    assert doctest.testmod(batching).failed == 0


def test_batches_hold_at_most_max_size_requests_in_arrival_order():
    run = Recorder()
    ask(MicroBatcher(run, max_size=2), [1, 2, 3, 4, 5])
    assert run.calls == [[1, 2], [3, 4], [5]]


def test_fewer_requests_than_max_size_are_served_once_the_wait_is_over():
    run = Recorder()
    assert ask(MicroBatcher(run, max_size=10, max_wait_s=0.01), ["a", "b", "c"]) == [("a", 1), ("b", 1), ("c", 1)]
    assert ask(MicroBatcher(run, max_size=10), ["alone"]) == [("alone", 2)]


def test_without_max_size_every_waiting_request_shares_one_call():
    run = Recorder()
    ask(MicroBatcher(run), list(range(50)))
    assert run.calls == [list(range(50))]


def test_each_caller_gets_its_own_result_when_keys_split_the_batch():
    run = Recorder()
    requests = [1, "a", 2, "b", 3]
    results = ask(MicroBatcher(run, key=type), requests)
    assert [request for request, _ in results] == requests
    assert run.calls == [[1, 2, 3], ["a", "b"]]


def test_an_exception_reaches_every_caller_of_the_call_and_the_next_batch_is_served():
    calls = []

    def run(requests):
        calls.append(requests)
        if len(calls) == 1:
            raise ValueError("model failed")
        return requests

    batcher = MicroBatcher(run)
    results = ask(batcher, [1, 2, 3])
    assert [type(r) for r in results] == [ValueError] * 3
    assert all(str(r) == "model failed" for r in results)
    assert ask(batcher, [4]) == [4]


def test_a_group_that_fails_does_not_fail_the_other_groups():
    def run(requests):
        if isinstance(requests[0], str):
            raise ValueError("strings are refused")
        return requests

    results = ask(MicroBatcher(run, key=type), [1, "a", 2])
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ValueError)


def test_a_wrong_number_of_results_is_an_error_for_every_caller():
    results = ask(MicroBatcher(lambda requests: requests[:1]), [1, 2])
    assert all(isinstance(r, RuntimeError) and "1 results for 2 requests" in str(r) for r in results)


def test_a_cancelled_caller_leaves_its_batch_and_the_others_are_answered():
    run = Recorder()
    batcher = MicroBatcher(run, max_size=2, max_wait_s=0.05)

    async def main():
        tasks = [asyncio.create_task(batcher.submit(r)) for r in ["first", "second", "third"]]
        await asyncio.sleep(0)  # every request is waiting; "first" started the batching task
        tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == [("second", 1), ("third", 1)]
    assert run.calls == [["second", "third"]]  # the cancelled request took no place in the batch


def test_a_caller_cancelled_during_the_call_does_not_disturb_the_others():
    release = threading.Event()
    run = Recorder(release)
    batcher = MicroBatcher(run)

    async def main():
        tasks = [asyncio.create_task(batcher.submit(r)) for r in [1, 2, 3]]
        await asyncio.to_thread(run.started.wait, 30)
        tasks[1].cancel()
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == (1, 1) and results[2] == (3, 1)
    assert isinstance(results[1], asyncio.CancelledError)


def test_requests_arriving_during_a_call_form_the_next_batch():
    release = threading.Event()
    run = Recorder(release)
    batcher = MicroBatcher(run)

    async def main():
        first = asyncio.create_task(batcher.submit("a"))
        await asyncio.to_thread(run.started.wait, 30)  # the model is busy with ["a"]
        later = [asyncio.create_task(batcher.submit(r)) for r in ["b", "c"]]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(first, *later)

    assert asyncio.run(main()) == [("a", 1), ("b", 2), ("c", 2)]
    assert run.calls == [["a"], ["b", "c"]]


def test_close_cancels_the_call_in_progress_and_the_waiting_requests():
    release = threading.Event()
    run = Recorder(release)
    batcher = MicroBatcher(run, max_size=1)

    async def main():
        tasks = [asyncio.create_task(batcher.submit(r)) for r in [1, 2]]
        await asyncio.to_thread(run.started.wait, 30)
        await batcher.close()
        release.set()  # let the worker thread finish so the loop can shut down
        return await asyncio.gather(*tasks, return_exceptions=True)

    assert [type(r) for r in asyncio.run(main())] == [asyncio.CancelledError] * 2
    assert ask(batcher, [3]) == [(3, 2)]  # a closed batcher serves again when asked


def test_one_batcher_serves_successive_event_loops():
    run = Recorder()
    batcher = MicroBatcher(run)
    assert ask(batcher, [1]) == [(1, 1)]
    assert ask(batcher, [2]) == [(2, 2)]


@pytest.mark.parametrize(("kwargs", "field"), [({"max_size": 0}, "max_size=0"), ({"max_wait_s": -1}, "max_wait_s=-1")])
def test_bad_settings_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MicroBatcher(list, **kwargs)
