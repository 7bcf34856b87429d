"""The continual-evaluation schedule (schedule.py): one place for iterations, tasks, passes, images."""

import itertools

import pytest

from stabgap.schedule import Schedule


@pytest.mark.parametrize("I, n, every, dense", list(itertools.product([1, 4, 7, 10], [1, 3], [1, 3, 10, 25], [0, 2, 7, 12])))
def test_closed_form_counts_equal_the_listed_iterations(I, n, every, dense):
    s = Schedule(I, n, tuple(range(10, 10 * n + 1, 10)), every=every, dense_after_switch=dense)
    listed = s.iterations()
    assert sum(s.per_context()) == len(listed)
    for k, count in enumerate(s.per_context(), start=1):
        assert count == sum(1 for t in listed if s.context(t) == k)
    assert s.eval_images() == sum(s.images(s.context(t)) for t in listed)
    assert all(t in listed for t in range(I, n * I + 1, I))  # every context's last iteration


def test_dense_window_after_each_switch():
    s = Schedule(20, 2, (5, 5), every=10, dense_after_switch=3)
    assert s.iterations() == [1, 2, 3, 10, 20, 21, 22, 23, 30, 40]


def test_scope_passes_and_images():
    seen = Schedule(10, 3, (100, 200, 300), test_augment=True)
    assert [seen.tasks(k) for k in (1, 2, 3)] == [1, 2, 3] and seen.logged_tasks == 3
    assert [seen.images(k) for k in (1, 2, 3)] == [100, 2 * 300, 3 * 600]  # k pooled passes in context k
    task1 = Schedule(10, 3, (100, 200, 300), scope="task1", test_augment=True)
    assert [task1.tasks(k) for k in (1, 2, 3)] == [1, 1, 1] and task1.logged_tasks == 1
    assert [task1.images(k) for k in (1, 2, 3)] == [100, 200, 300]
    # Split CIFAR-10 under the v1 protocol: task 1 alone costs about a third of every seen task
    v1 = dict(iters_per_context=400, eval_every=1, test_augment=True, eval_subset=None)
    full = Schedule.of({**v1, "eval_scope": "seen"}, [2000] * 5).eval_images()
    one = Schedule.of({**v1, "eval_scope": "task1"}, [2000] * 5).eval_images()
    assert 0.25 < one / full < 0.4


def test_of_a_run_caps_tasks_at_the_subset_and_checks_its_values():
    s = Schedule.of({"iters_per_context": 5, "eval_every": 2, "eval_subset": 50, "eval_scope": "task1",
                     "eval_dense_after_switch": 1, "test_augment": False}, [2115, 30])
    assert s.test_sizes == (50, 30) and s.scope == "task1" and s.dense_after_switch == 1
    with pytest.raises(ValueError, match="scope"):
        Schedule(5, 1, (10,), scope="all")
