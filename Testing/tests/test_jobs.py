"""The long-work runner every module widget uses: progress, cancel, result and error cross the thread."""

import threading

import pytest

from CardiacSuiteLib.errors import Cancelled, InputError
from CardiacSuiteLib.inference import CancelToken
from CardiacSuiteLib.jobs import BackgroundJob, run_job


def test_result_and_progress_reach_the_caller():
    step = threading.Event()

    def work(progress, cancel):
        progress(0.5, "half")
        step.wait(5)
        progress(2.0, "past the end")
        return 42

    job = BackgroundJob(work).start()
    while job.progress() != (0.5, "half"):
        job.wait(0.01)
    assert not job.done()
    step.set()
    assert job.wait(5)
    assert job.done() and job.result == 42 and job.error is None
    assert job.progress() == (1.0, "past the end")  # clamped to [0, 1]


def test_cancel_stops_the_work_and_keeps_its_error():
    started = threading.Event()

    def work(progress, cancel: CancelToken):
        started.set()
        while True:
            cancel.raise_if_cancelled()
            threading.Event().wait(0.005)

    job = BackgroundJob(work).start()
    assert started.wait(5)
    job.cancel()
    assert job.wait(5)
    assert isinstance(job.error, Cancelled) and job.result is None and not job.discarded


def test_discard_marks_the_result_unwanted():
    job = BackgroundJob(lambda progress, cancel: "made for a closed scene")
    job.discard()
    job.start().wait(5)
    assert job.discarded and job.cancel_token.cancelled


def test_run_job_forwards_progress_and_raises_the_error():
    seen = []

    def fails(progress, cancel):
        progress(0.25, "reading")
        raise InputError("the folder is empty")

    with pytest.raises(InputError, match="the folder is empty"):
        run_job(fails, progress=lambda fraction, message: seen.append((fraction, message)))
    assert seen[-1] == (0.25, "reading")
    assert run_job(lambda progress, cancel: "done") == "done"
