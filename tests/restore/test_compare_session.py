"""The compare dock's Qt-free session (issue 17): results belong to one run, failures stay,
results of another input are never scored against the current one."""

from __future__ import annotations

import numpy as np
import pytest

from napari_care_losses.restore.compare_session import (
    DONE,
    FAILED,
    NOT_RUN,
    CompareSession,
    Source,
)
from napari_care_losses.restore.engine import MethodResult, MethodSpec
from napari_care_losses.restore.metrics import score

TV, NLM = MethodSpec.for_baseline("tv"), MethodSpec.for_baseline("nlm")


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    gt = rng.random((2, 32, 32)).astype(np.float32)
    return gt + 0.1 * rng.standard_normal(gt.shape).astype(np.float32), gt


def result(spec, image, gt=None) -> MethodResult:
    scores = [score(a, b) for a, b in zip(image, gt, strict=True)] if gt is not None else None
    return MethodResult(spec, image, None, scores)


def session_on(low, gt, name="A") -> tuple[CompareSession, Source, Source]:
    s = CompareSession()
    inp, truth = Source(f"{name} low", low.shape), Source(f"{name} high", gt.shape)
    s.set_context(inp, truth)
    return s, inp, truth


def test_a_new_run_replaces_the_last_and_ignores_late_events(pair):
    low, gt = pair
    s, inp, truth = session_on(low, gt)
    removed = []
    s.run_started.connect(lambda run, old: removed.extend(e.name for e in old))
    r1 = s.begin(inp, truth, [NLM, TV], len(low))
    assert r1.methods == ("TV", "NL-means")  # panel order, whatever the ticking order
    s.add_result(r1.number, result(TV, low, gt))
    s.add_result(r1.number, result(NLM, low, gt))
    s.end(r1.number)
    r2 = s.begin(inp, truth, [TV], len(low))
    assert removed == ["TV", "NL-means"] and list(s.entries) == ["TV"]
    s.add_result(r1.number, result(NLM, low, gt))  # a late event of run 1
    assert "NL-means" not in s.entries and s.results() == []
    s.add_result(r2.number, result(TV, low, gt))
    assert [e.name for e in s.results()] == ["TV"] and s.entries["TV"].run == r2.number


def test_failures_stay_until_the_next_run(pair):
    low, gt = pair
    s, inp, truth = session_on(low, gt)
    run = s.begin(inp, truth, [TV, NLM], len(low))
    s.add_result(run.number, result(TV, low, gt))
    s.fail(run.number, "NL-means", "the restore process was ended by signal 9")
    s.end(run.number)
    text, error = s.status()
    assert error and "NL-means failed: the restore process was ended by signal 9" in text
    # nothing automatic replaces it: re-scoring notes, picker problems, picker changes
    s.note("scored against 'A high'")
    s.set_problem("ground truth 'x' does not fit input 'A low'")
    s.set_context(inp, None)
    s.set_problem(None)
    text, error = s.status()
    assert error and "ended by signal 9" in text and "scored against" in text
    assert s.row_note(s.entries["NL-means"]) == (
        "failed: the restore process was ended by signal 9")
    s.begin(inp, truth, [TV], len(low))
    assert s.status() == ("", False)


def test_a_dead_process_fails_the_method_and_the_rest_are_not_run(pair):
    low, gt = pair
    s, inp, truth = session_on(low, gt)
    run = s.begin(inp, truth, [TV, NLM, MethodSpec.for_baseline("gaussian")], len(low))
    s.method_started(run.number, "TV")
    s.fail(run.number, "TV", "the restore process was ended by signal 9")
    s.end(run.number)
    assert [e.state for e in s.entries.values()] == [FAILED, NOT_RUN, NOT_RUN]
    assert "not run: " in s.summary() and "restored with 0 of 3" in s.summary()
    # a failure of the whole job (not one method) fails every method not done
    run = s.begin(inp, truth, [TV, NLM], len(low))
    s.add_result(run.number, result(TV, low, gt))
    s.fail(run.number, "input", "input 'A low' has NaN or infinite pixels in frame 1")
    assert s.entries["TV"].state == DONE and s.entries["NL-means"].state == FAILED


def test_results_of_another_input_are_never_scored(pair):
    low, gt = pair
    s, inp, truth = session_on(low, gt)
    run = s.begin(inp, truth, [TV], len(low))
    s.add_result(run.number, result(TV, low, gt))
    s.end(run.number)
    entry = s.entries["TV"]
    assert s.scores(entry) == [score(low[0], gt[0]), score(low[1], gt[1])]
    # another pair of the same shape: A's result is not scored against B's ground truth
    other_in, other_gt = Source("B low", low.shape), Source("B high", gt.shape)
    s.set_context(other_in, other_gt)
    assert s.row_note(entry) == "restored from 'A low', not the current input"
    assert s.scores(entry) == [] and s.unscored() == {}
    assert s.frame_score(entry, 0, gt[0]) is None
    s.store_scores(run.number, "TV", other_gt, [score(low[0], gt[0])] * 2)
    assert other_gt not in entry.scores
    # back on A with another ground truth of A's shape: re-scored, then stored
    new_gt = Source("A high v2", gt.shape)
    s.set_context(inp, new_gt)
    assert list(s.unscored()) == ["TV"]
    s.store_scores(run.number, "TV", new_gt, [score(low[0], gt[1])] * 2)
    assert s.scores(entry) == [score(low[0], gt[1])] * 2
    # a ground truth of another shape is never used
    s.set_context(inp, Source("crop", (2, 16, 16)))
    assert s.unscored() == {} and "does not fit" in s.row_note(entry)


def test_stop_discards_the_running_method(pair):
    low, gt = pair
    s, inp, truth = session_on(low, gt)
    run = s.begin(inp, truth, [TV, NLM], len(low))
    s.add_result(run.number, result(TV, low, gt))
    s.method_started(run.number, "NL-means")
    s.discard(run.number, "NL-means")
    s.end(run.number, stopped=True)
    assert s.outcome == "stopped" and [e.name for e in s.shown()] == ["TV"]
    assert "discarded the partial NL-means" in s.status()[0]


def test_the_session_needs_no_qt_napari_or_tensorflow():
    import subprocess
    import sys

    code = ("import sys, napari_care_losses.restore.compare_session as s; "
            "print(sorted(m for m in ('qtpy', 'napari', 'psygnal', 'tensorflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
