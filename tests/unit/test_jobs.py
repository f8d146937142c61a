"""Server-owned jobs: started once whoever asks, progress shared, failures kept until asked again."""
import threading

from services import jobs


def test_many_sessions_asking_at_once_start_the_work_once_and_share_its_progress():
    gate, calls = threading.Event(), []

    def work(progress):
        calls.append(1)
        progress(0.5, "half way")
        gate.wait(10)

    seen = []
    threads = [threading.Thread(target=lambda: seen.append(jobs.run_once("unit:once", work))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(j) for j in seen}) == 1 and seen[0].running
    while seen[0].fraction < 0.5:
        pass
    assert seen[0].message == "half way"
    gate.set()
    assert seen[0].wait(10) and seen[0].state == "done" and seen[0].fraction == 1.0
    assert calls == [1]
    assert jobs.run_once("unit:once", work) is seen[0] and calls == [1]  # done: not again


def test_a_failed_job_keeps_its_message_and_the_next_request_starts_it_again():
    attempts = []

    def work(progress):
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("too few patients to fit the model")

    first = jobs.run_once("unit:fails", work)
    assert first.wait(10) and first.state == "failed" and first.error == "too few patients to fit the model"
    assert jobs.get("unit:fails") is first
    second = jobs.run_once("unit:fails", work)
    assert second is not first and second.wait(10) and second.state == "done" and len(attempts) == 2


def test_a_finished_job_whose_result_is_gone_runs_again_when_asked_to():
    runs = []
    done = jobs.run_once("unit:again", lambda progress: runs.append(1))
    assert done.wait(10)
    assert jobs.run_once("unit:again", lambda progress: runs.append(1)) is done
    again = jobs.run_once("unit:again", lambda progress: runs.append(1), again_if_done=True)
    assert again is not done and again.wait(10) and runs == [1, 1]
