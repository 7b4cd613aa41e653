"""The job aggregate's rules, over any sequence of commands: a finished job stays finished, a
job is attempted at most MAX_ATTEMPTS times, and a cancel is always answered."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiplatform.aggregates import JOBS
from aiplatform.domain import jobs
from aiplatform.domain.errors import InvalidStateError
from aiplatform.eventstore.codec import Event

JOB_ID = "00000000-0000-4000-8000-000000000001"
SUBMIT = jobs.SubmitJob(
    job_id=JOB_ID,
    project_id="p",
    name="m",
    template="char-lm",
    dataset_id="d",
    dataset_version="v1",
    base_model_id=None,
    hyperparameters={},
)

COMMANDS = st.sampled_from(
    [
        jobs.StartAttempt(job_id=JOB_ID, worker="w", devices=["cpu"]),
        jobs.RetryJob(job_id=JOB_ID, reason="crashed"),
        jobs.CancelJob(job_id=JOB_ID),
        jobs.ConfirmCancelled(job_id=JOB_ID),
        jobs.SucceedJob(job_id=JOB_ID, model_id="m1", metrics={}, duration_s=1, resource_usage={}),
        jobs.FailJob(job_id=JOB_ID, error="boom"),
    ]
)


def run(commands: list[jobs.JobCommand]) -> tuple[jobs.Job, list[Event]]:
    state = JOBS.evolve(None, jobs.decide(None, SUBMIT)[0])
    assert state is not None
    history: list[Event] = []
    for command in commands:
        try:
            events = jobs.decide(state, command)
        except InvalidStateError:
            assert isinstance(command, jobs.CancelJob)
            assert state.finished  # only a finished job refuses a cancel
            continue
        for event in events:
            state = JOBS.evolve(state, event)
            assert state is not None
        history.extend(events)
    return state, history


@given(st.lists(COMMANDS, max_size=40))
def test_a_finished_job_never_changes_again(commands: list[jobs.JobCommand]) -> None:
    state, history = run(commands)
    finals = [
        e for e in history if isinstance(e, jobs.JobSucceeded | jobs.JobFailed | jobs.JobCancelled)
    ]
    assert len(finals) <= 1
    if finals:
        assert history[-1] is finals[0]
        assert state.finished


@given(st.lists(COMMANDS, max_size=40))
def test_a_job_is_attempted_at_most_max_attempts_times(commands: list[jobs.JobCommand]) -> None:
    _, history = run(commands)
    starts = [e for e in history if isinstance(e, jobs.JobStarted)]
    assert len(starts) <= jobs.MAX_ATTEMPTS
    assert [s.attempt for s in starts] == list(range(1, len(starts) + 1))


def test_the_retry_after_the_last_attempt_fails_the_job() -> None:
    start = jobs.StartAttempt(job_id=JOB_ID, worker="w", devices=["cpu"])
    retry = jobs.RetryJob(job_id=JOB_ID, reason="the trainer crashed")
    state, history = run([start, retry] * (jobs.MAX_ATTEMPTS - 1) + [start, retry])
    assert state.status == "failed"
    assert isinstance(history[-1], jobs.JobFailed)
    assert "gave up after 4 attempts" in history[-1].error
    assert "the trainer crashed" in history[-1].error


def test_cancelling_a_waiting_job_cancels_it_and_a_running_one_asks_its_worker() -> None:
    waiting, _ = run([jobs.CancelJob(job_id=JOB_ID)])
    assert waiting.status == "cancelled"
    running, history = run(
        [
            jobs.StartAttempt(job_id=JOB_ID, worker="w", devices=["cpu"]),
            jobs.CancelJob(job_id=JOB_ID),
        ]
    )
    assert running.status == "running"
    assert running.cancel_requested
    assert isinstance(history[-1], jobs.JobCancelRequested)
    # The worker's success after the request is recorded as the cancel the user asked for.
    done, _ = run(
        [
            jobs.StartAttempt(job_id=JOB_ID, worker="w", devices=["cpu"]),
            jobs.CancelJob(job_id=JOB_ID),
            jobs.SucceedJob(
                job_id=JOB_ID, model_id="m", metrics={}, duration_s=1, resource_usage={}
            ),
        ]
    )
    assert done.status == "cancelled"
    with pytest.raises(InvalidStateError, match="cancelled"):
        jobs.decide(done, jobs.CancelJob(job_id=JOB_ID))


def test_reported_metrics_keep_only_finite_numbers() -> None:
    from aiplatform.workers.training import finite_numbers

    reported = {"loss": 1.5, "val_perplexity": float("inf"), "lr": float("nan"), "ok": True}
    assert finite_numbers(reported) == {"loss": 1.5}
    assert finite_numbers(["not", "an", "object"]) == {}
