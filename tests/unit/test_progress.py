"""Deploy progress: service states, the verdict, both renderings, and the watch loop."""

from __future__ import annotations

import io
from collections.abc import Sequence

import pytest

from swarmlite.api.client import ApiClient
from swarmlite.api.models import DeployResult, ServiceSummary
from swarmlite.cli.progress import (
    ServiceView,
    event_lines,
    redraw,
    service_view,
    table_lines,
    verdict,
)
from swarmlite.cli.stack_cmds import roll_back, watch_deploy
from swarmlite.spec.objects import Service, Task, TaskState, TaskStatus
from swarmlite.spec.service import RestartCondition, RestartPolicy, ServiceSpec

S = TaskState


def summary(
    running: int,
    desired: int,
    update: str = "",
    message: str = "",
    name: str = "demo_web",
    version: int = 0,
) -> ServiceSummary:
    return ServiceSummary(
        id=name,
        name=name,
        stack="demo",
        mode="replicated",
        desired=desired,
        running=running,
        image="img",
        ports=(),
        update_state=update,
        update_message=message,
        spec_version=version,
    )


def task(
    slot: int,
    state: TaskState,
    *,
    err: str = "",
    message: str = "",
    version: int = 1,
    pending: str = "",
    at: float = 0.0,
    restart: RestartCondition = "any",
    name: str = "web",
) -> Task:
    spec = ServiceSpec(
        name=name, stack="demo", image="img", restart_policy=RestartPolicy(condition=restart)
    )
    return Task(
        id=f"t{slot}-{int(state)}-{at}",
        service_id=name,
        service_name=f"demo_{name}",
        slot=slot,
        spec=spec,
        spec_version=version,
        spec_hash="h",
        status=TaskStatus(state=state, err=err, message=message, timestamp=at),
        pending_reason=pending,
    )


def view(
    s: ServiceSummary,
    tasks: Sequence[Task] = (),
    *,
    created: bool = True,
    changed: bool = True,
    first: str = "",
    running_for: dict[str, float] | None = None,
) -> ServiceView:
    return service_view(
        s,
        tasks,
        created=created,
        changed=changed,
        first_update_state=first,
        running_for=running_for,
    )


IMAGE = "image not found: x"
# id, summary, tasks, (state, step, failed)
CASES: list[tuple[str, ServiceSummary, list[Task], tuple[str, str, str]]] = [
    ("all running", summary(2, 2), [task(1, S.RUNNING), task(2, S.RUNNING)],
     ("converged", "", "")),
    ("one starting", summary(1, 2), [task(1, S.RUNNING), task(2, S.STARTING, message="starting")],
     ("creating", "demo_web.2: starting", "")),
    ("held by a dependency", summary(0, 1),
     [task(1, S.PENDING, pending="waiting for db: service_healthy (0/1 healthy)")],
     ("creating", "1 pending: waiting for db: service_healthy (0/1 healthy)", "")),
    ("one failure, restarting", summary(0, 1), [task(1, S.REJECTED, err=IMAGE, at=1)],
     ("creating", f"last error: task demo_web.1 failed: {IMAGE}", "")),
    ("three failures", summary(0, 1),
     [task(1, S.REJECTED, err=IMAGE, at=t) for t in (1, 2, 3)],
     ("failed", f"task demo_web.1 failed: {IMAGE} (3 failed tasks)",
      f"task demo_web.1 failed: {IMAGE} (3 failed tasks)")),
    ("restart none fails at once", summary(0, 1),
     [task(1, S.FAILED, err="task: non-zero exit (1)", restart="none")],
     ("failed", "task demo_web.1 failed: task: non-zero exit (1)",
      "task demo_web.1 failed: task: non-zero exit (1)")),
    ("job completed", summary(0, 1), [task(1, S.COMPLETE, restart="on-failure")],
     ("completed", "", "")),
    ("updating", summary(2, 2, "updating", "slot 1: updating"), [task(1, S.RUNNING)],
     ("updating", "slot 1: updating", "")),
    ("update paused", summary(1, 2, "paused", "task demo_web.2 failed: boom"), [],
     ("update paused", "update paused: task demo_web.2 failed: boom",
      "update paused: task demo_web.2 failed: boom")),
    ("rolled back", summary(2, 2, "rollback_completed", "rolled back: health"), [],
     ("rolled back", "rolled back: health", "rolled back: health")),  # said once
    ("old failures of an older version", summary(1, 1),
     [task(1, S.FAILED, err="old", version=1), task(1, S.RUNNING, version=2)],
     ("converged", "", "")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("s", "tasks", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_service_view(s: ServiceSummary, tasks: list[Task], expected: tuple[str, str, str]) -> None:
    v = view(s, tasks)
    assert (v.state, v.step, v.failed) == expected


def test_failures_of_a_service_this_deploy_did_not_change_do_not_fail_it() -> None:
    tasks = [task(1, S.FAILED, err="boom", at=t) for t in (1, 2, 3)]
    v = view(summary(0, 1), tasks, created=False, changed=False)
    assert (v.state, v.failed) == ("scaling", "")


def test_a_rollback_that_finished_before_the_deploy_is_not_a_failure() -> None:
    s = summary(2, 2, "rollback_completed", "rolled back")
    v = view(s, [task(1, S.RUNNING), task(2, S.RUNNING)], first="rollback_completed")
    assert (v.state, v.failed) == ("converged", "")


def test_the_services_version_decides_which_failures_count() -> None:
    # The fix was just deployed (version 2): its tasks do not exist yet, and the broken
    # version's failures are not this deploy's.
    broken = [task(1, S.FAILED, err="exit 1", version=1, at=t) for t in (1, 2, 3)]
    v = view(summary(0, 1, version=2), broken, created=False)
    assert (v.state, v.failed, v.failures) == ("scaling", "", ())


def test_a_scale_down_converges_once_the_orchestrator_acted_on_it() -> None:
    # Scaled 5 -> 3 as version 2: before the orchestrator's pass all 5 still run.
    before = [task(slot, S.RUNNING, version=1) for slot in range(1, 6)]
    v = view(summary(5, 3, version=2), before, created=False)
    assert v.state == "scaling" and not v.done
    after = [task(slot, S.RUNNING, version=2) for slot in range(1, 4)]
    assert view(summary(3, 3, version=2), after, created=False).state == "converged"


def test_a_task_that_crashes_and_restarts_is_verifying_not_converged() -> None:
    crashed = task(1, S.FAILED, err="task: non-zero exit (1)", at=1)
    again = task(1, S.RUNNING, at=2)
    early = view(summary(1, 1), [crashed, again], running_for={again.id: 1.0})
    assert early.state == "verifying" and not early.done
    assert early.step == "waiting 5 s to see the tasks stay up after 1 failed"
    settled = view(summary(1, 1), [crashed, again], running_for={again.id: 5.0})
    assert settled.state == "converged"
    # Without a failure of its version, running is enough.
    fine = view(summary(1, 1), [again], running_for={again.id: 0.0})
    assert fine.state == "converged"


def test_verdict() -> None:
    ok = view(summary(1, 1), [task(1, S.RUNNING)])
    waiting = view(summary(0, 1), [task(1, S.STARTING)])
    bad = view(summary(1, 2, "paused", "boom"), [], created=False)
    assert verdict([ok]).outcome == "converged"
    assert verdict([]).outcome == "converged"
    assert verdict([ok, waiting]).outcome == "waiting"
    assert verdict([ok, waiting, bad]).reason == "demo_web: update paused: boom"


def test_table_lines_align_columns() -> None:
    views = [
        ServiceView("demo_web", 2, 3, "creating", "demo_web.3: starting"),
        ServiceView("demo_db", 1, 1, "converged"),
    ]
    assert table_lines(views) == [
        "demo_web      2/3  creating         demo_web.3: starting",
        "demo_db       1/1  converged",
    ]


def test_event_lines_say_only_what_changed() -> None:
    first = view(summary(0, 1), [task(1, S.REJECTED, err=IMAGE, at=1)])
    assert event_lines({}, [first]) == [
        f"demo_web: task demo_web.1 failed: {IMAGE}",
        "demo_web: 0/1 running",
        "demo_web: creating",
    ]
    same = view(summary(0, 1), [task(1, S.REJECTED, err=IMAGE, at=1)])
    assert event_lines({"demo_web": first}, [same]) == []
    tasks = [task(1, S.REJECTED, err=IMAGE, at=1), task(1, S.RUNNING, at=2)]
    up = view(summary(1, 1), tasks, running_for={tasks[1].id: 5.0})
    assert event_lines({"demo_web": first}, [up]) == [
        "demo_web: 1/1 running",
        "demo_web: converged",
    ]


def test_redraw_moves_up_over_the_previous_block() -> None:
    assert redraw(0, ["a"]) == "\x1b[2Ka\n"
    assert redraw(2, ["a", "b"]) == "\x1b[2A\x1b[2Ka\n\x1b[2Kb\n"
    # Shorter than before: the leftover line is cleared and the cursor comes back.
    assert redraw(2, ["a"]) == "\x1b[2A\x1b[2Ka\n\x1b[2K\n\x1b[1A"


class FakeApi(ApiClient):
    """Answers services() and tasks() from a script, one step per poll."""

    def __init__(self, script: list[tuple[list[ServiceSummary], list[Task]]]) -> None:
        super().__init__("http://127.0.0.1:9", None)
        self.script = script
        self.polls = 0
        self.rolled_back: list[str] = []
        self.reasons: list[str] = []

    async def services(self, stack: str | None = None) -> list[ServiceSummary]:
        step = self.script[min(self.polls, len(self.script) - 1)]
        return step[0]

    async def tasks(
        self, service: str | None = None, stack: str | None = None, node: str | None = None
    ) -> list[Task]:
        step = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        return step[1]

    async def rollback(self, name: str, reason: str = "") -> Service:
        self.rolled_back.append(name)
        self.reasons.append(reason)
        return Service(id=name, spec=ServiceSpec(name="web", stack="demo", image="img"))


async def no_sleep(_: float) -> None:
    return None


RESULT = DeployResult(stack="demo", created=("demo_web",))


async def test_watch_until_converged_prints_one_line_per_change() -> None:
    api = FakeApi(
        [
            ([summary(0, 2)], [task(1, S.PENDING), task(2, S.PENDING)]),
            ([summary(1, 2)], [task(1, S.RUNNING), task(2, S.STARTING)]),
            ([summary(2, 2)], [task(1, S.RUNNING), task(2, S.RUNNING)]),
        ]
    )
    out = io.StringIO()
    outcome = await watch_deploy(api, RESULT, timeout=10, out=out, tty=False, sleep=no_sleep)
    assert outcome.outcome == "converged"
    assert out.getvalue().splitlines() == [
        "demo_web: 0/2 running",
        "demo_web: creating",
        "demo_web: 1/2 running",
        "demo_web: 2/2 running",
        "demo_web: converged",
    ]


async def test_watch_fails_on_repeated_task_failures_and_names_them() -> None:
    fails = [task(1, S.REJECTED, err=IMAGE, at=t) for t in (1, 2, 3)]
    api = FakeApi([([summary(0, 1)], fails[:1]), ([summary(0, 1)], fails)])
    out = io.StringIO()
    outcome = await watch_deploy(api, RESULT, timeout=10, out=out, tty=False, sleep=no_sleep)
    assert outcome.outcome == "failed"
    assert outcome.reason == f"demo_web: task demo_web.1 failed: {IMAGE} (3 failed tasks)"


async def test_watch_times_out() -> None:
    api = FakeApi([([summary(0, 1)], [task(1, S.STARTING)])])
    ticks = iter(range(100))
    outcome = await watch_deploy(
        api,
        RESULT,
        timeout=3,
        out=io.StringIO(),
        tty=True,
        clock=lambda: float(next(ticks)),
        sleep=no_sleep,
    )
    assert outcome.reason == "not converged after 3s: demo_web (0/1 creating)"


async def test_roll_back_asks_for_updated_services_not_already_rolling_back() -> None:
    web, api_svc = "demo_web", "demo_api"
    before = [summary(1, 1, "paused", name=web), summary(1, 1, "rollback_started", name=api_svc)]
    after = [
        summary(1, 1, "rollback_completed", name=web),
        summary(1, 1, "rollback_completed", name=api_svc),
    ]
    api = FakeApi([(before, []), (before, []), (after, [])])
    result = DeployResult(stack="demo", updated=(web, api_svc))
    said = await roll_back(
        api, result, timeout=10, out=io.StringIO(), tty=False, sleep=no_sleep, reason="deploy"
    )
    assert api.rolled_back == [web] and api.reasons == ["deploy"]
    assert said == "rolled back demo_web, demo_api"
