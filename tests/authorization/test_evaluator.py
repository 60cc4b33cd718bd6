"""The evaluator's combination rules (ASP.NET's DefaultAuthorizationService)."""

from __future__ import annotations

import ast
import functools
import gc
import pathlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

import triohub.actors.authorization
import triohub.authorization
from triohub.authorization import (
    AuthenticatedUserRequirement,
    AuthorizationContext,
    AuthorizationPolicy,
    AuthorizationResult,
    PolicyRegistry,
    Requirement,
    RolesRequirement,
    evaluate,
    evaluate_sync,
)
from triohub.authorization.evaluator import evaluate_plan, evaluate_plan_async
from triohub.authorization.policy import Step

from .support import ANONYMOUS, Marker, context_for, run_policy, user

# -- helpers -----------------------------------------------------------------

SUCCEED, ABSTAIN, FAIL = "succeed", "abstain", "fail"


def acting(outcome: str, target: Requirement, *, reason: str | None = None) -> Any:
    """A handler that succeeds, ignores, or fails ``target`` (found by equality)."""

    def handler(context: AuthorizationContext) -> None:
        for requirement in context.requirements_of(type(target)):
            if requirement == target:
                if outcome == SUCCEED:
                    context.succeed(requirement)
                elif outcome == FAIL:
                    context.fail(reason)

    handler.__qualname__ = f"{outcome}({target})"
    return handler


def check(
    requirements: list[Requirement],
    handlers: Sequence[tuple[type[Requirement], Any]],
    principal: Any = None,
) -> AuthorizationResult:
    registry = PolicyRegistry()
    for requirement_type, handler in handlers:
        registry.add_handler(requirement_type, handler)
    policy = AuthorizationPolicy(requirements)
    return run_policy(policy, principal or user(), None, registry)


A, B, C = Marker("a"), Marker("b"), Marker("c")

# -- truth tables -------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        # several handlers for one requirement
        ([SUCCEED], True),
        ([ABSTAIN], False),
        ([FAIL], False),
        ([SUCCEED, ABSTAIN], True),  # one success suffices...
        ([ABSTAIN, SUCCEED], True),
        ([SUCCEED, SUCCEED], True),
        ([SUCCEED, FAIL], False),  # ...unless another handler fails
        ([FAIL, SUCCEED], False),  # (whatever the order)
        ([ABSTAIN, ABSTAIN], False),
        ([], False),  # nobody handled it
    ],
)
def test_handlers_of_one_requirement(outcomes: list[str], expected: bool) -> None:
    result = check([A], [(Marker, acting(outcome, A)) for outcome in outcomes])
    assert result.succeeded is expected
    assert result.fail_called is (FAIL in outcomes)
    assert result.failed_requirements == (() if SUCCEED in outcomes else (A,))


@pytest.mark.parametrize(
    ("a", "b", "c", "expected"),
    [
        (SUCCEED, SUCCEED, SUCCEED, True),
        (SUCCEED, SUCCEED, ABSTAIN, False),
        (ABSTAIN, SUCCEED, SUCCEED, False),
        (SUCCEED, FAIL, SUCCEED, False),
        (FAIL, FAIL, FAIL, False),
        (ABSTAIN, ABSTAIN, ABSTAIN, False),
    ],
)
def test_every_requirement_must_succeed(a: str, b: str, c: str, expected: bool) -> None:
    handlers = [(Marker, acting(a, A)), (Marker, acting(b, B)), (Marker, acting(c, C))]
    assert check([A, B, C], handlers).succeeded is expected


def test_explicit_fail_beats_success_of_every_requirement() -> None:
    def veto(context: AuthorizationContext) -> None:
        context.fail("outside office hours")

    result = check([A], [(Marker, acting(SUCCEED, A)), (Marker, veto)])
    assert not result.succeeded
    assert result.failed_requirements == ()
    assert result.fail_called
    assert result.failure_reasons == ("outside office hours",)
    assert result.failed_requirement_name is None
    assert result.description == "denied (fail() called: outside office hours)"


def test_unhandled_requirement_fails_and_is_named() -> None:
    result = check([A, B], [(Marker, acting(SUCCEED, A))])
    assert not result.succeeded
    assert not result.fail_called
    assert result.failed_requirements == (B,)
    assert result.failed_requirement_name == "Marker"
    assert result.description == "denied (unmet: Marker)"


def test_failure_reasons_are_collected_in_order_and_optional() -> None:
    handlers = [
        (Marker, acting(FAIL, A, reason="first")),
        (Marker, acting(FAIL, A)),
        (Marker, acting(FAIL, A, reason="second")),
    ]
    result = check([A], handlers)
    assert result.failure_reasons == ("first", "second")
    assert result.fail_called


def test_every_handler_runs_even_after_a_failure() -> None:
    calls: list[str] = []

    def recorder(name: str, fail: bool) -> Any:
        def handler(context: AuthorizationContext) -> None:
            calls.append(name)
            if fail:
                context.fail()

        return handler

    check([A], [(Marker, recorder("1", True)), (Marker, recorder("2", False))])
    assert calls == ["1", "2"]


def test_success_result_description() -> None:
    result = check([A], [(Marker, acting(SUCCEED, A))])
    assert result == AuthorizationResult(succeeded=True)
    assert result.description == "allowed"
    assert result.failed_requirement_name is None


# -- which handlers run, and what they see ------------------------------------


@attrs.frozen
class Special(Marker):
    pass


@attrs.frozen
class Other(Requirement):
    pass


def test_handler_runs_only_for_policies_holding_its_type() -> None:
    calls: list[str] = []
    registry = PolicyRegistry()
    registry.add_handler(Other, lambda context: calls.append("other"))

    run_policy(AuthorizationPolicy([A]), user(), None, registry)
    assert calls == []


def test_handler_for_a_base_type_sees_subclasses() -> None:
    special = Special("s")
    result = check([special], [(Marker, acting(SUCCEED, special))])
    assert result.succeeded


def test_handler_sees_all_and_pending_requirements_of_its_type() -> None:
    seen: dict[str, Any] = {}

    def handler(context: AuthorizationContext) -> None:
        seen["all"] = context.requirements_of(Marker)
        seen["pending"] = context.pending(Marker)
        seen["pending_all"] = context.pending_requirements

    auth = AuthenticatedUserRequirement()
    check([A, auth, B], [(Marker, acting(SUCCEED, A)), (Marker, handler)])
    assert seen["all"] == (A, B)
    assert seen["pending"] == (B,)
    # The built-in requirement handled itself before any registered handler ran.
    assert seen["pending_all"] == (B,)


def test_built_in_requirements_take_registered_handlers_too() -> None:
    admins = RolesRequirement(["Admin"])

    def break_glass(context: AuthorizationContext) -> None:
        if context.principal.has_claim("break_glass", True):
            for requirement in context.requirements_of(RolesRequirement):
                context.succeed(requirement)

    registry = PolicyRegistry()
    registry.add_handler(RolesRequirement, break_glass)
    policy = AuthorizationPolicy([admins])
    assert not run_policy(policy, user("bob"), None, registry).succeeded
    assert run_policy(policy, user("bob", break_glass=True), None, registry).succeeded
    assert run_policy(policy, user("al", "Admin"), None, registry).succeeded


class ObjectHandler:
    def __init__(self) -> None:
        self.calls = 0

    def handle(self, context: AuthorizationContext) -> None:
        self.calls += 1
        for requirement in context.requirements_of(Marker):
            context.succeed(requirement)


class AsyncObjectHandler(ObjectHandler):
    async def handle(self, context: AuthorizationContext) -> None:  # type: ignore[override]
        super().handle(context)


async def async_function_handler(context: AuthorizationContext) -> None:
    for requirement in context.requirements_of(Marker):
        context.succeed(requirement)


@pytest.mark.parametrize(
    "make", [ObjectHandler, AsyncObjectHandler, lambda: async_function_handler]
)
def test_handler_kinds(make: Callable[[], Any]) -> None:
    assert check([A, B], [(Marker, make())]).succeeded


def test_registered_handler_object_runs_once_per_evaluation() -> None:
    handler = ObjectHandler()
    check([A, B, C], [(Marker, handler)])
    assert handler.calls == 1


def test_self_handling_requirement_runs_once_even_if_listed_twice() -> None:
    calls: list[int] = []

    @attrs.frozen
    class Counting(Requirement):
        def handle(self, context: AuthorizationContext) -> None:
            calls.append(1)
            context.succeed(self)

    counting = Counting()
    policy = AuthorizationPolicy.combine(
        AuthorizationPolicy([counting]), AuthorizationPolicy([counting])
    )
    assert run_policy(policy, user()).succeeded
    assert calls == [1]


def test_succeed_matches_equal_requirements_and_ignores_strangers() -> None:
    context = context_for(user(), Marker("a"), Marker("a"), Marker("b"))
    context.succeed(Marker("a"))  # equal, not identical
    assert context.pending_requirements == (Marker("b"),)
    context.succeed(Marker("zzz"))  # not in the policy: ignored, as in ASP.NET
    assert context.pending_requirements == (Marker("b"),)
    assert not context.has_succeeded
    context.succeed(Marker("b"))
    assert context.has_succeeded


def test_a_context_without_requirements_never_succeeds() -> None:
    context = AuthorizationContext(user(), None, [])
    assert not context.has_succeeded
    assert context.user is context.principal


def test_without_a_registry_only_self_handling_requirements_decide() -> None:
    policy = AuthorizationPolicy([AuthenticatedUserRequirement(), A])
    result = run_policy(policy, user())
    assert result.failed_requirements == (A,)


def test_a_handler_that_returns_true_is_an_error_not_a_grant() -> None:
    registry = PolicyRegistry()
    registry.add_handler(Marker, lambda context: True)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"context\.succeed\(requirement\)"):
        run_policy(AuthorizationPolicy([A]), user(), None, registry)


def test_a_handler_that_raises_propagates() -> None:
    def broken(context: AuthorizationContext) -> None:
        raise ConnectionError("user directory unreachable")

    with pytest.raises(ConnectionError):
        check([A], [(Marker, acting(SUCCEED, A)), (Marker, broken)])


async def test_async_handlers_are_awaited_under_trio() -> None:
    async def slow_lookup(context: AuthorizationContext) -> None:
        await trio.sleep(1)
        if context.principal.is_in_role("Admin"):
            context.succeed(A)

    registry = PolicyRegistry()
    registry.add_handler(Marker, slow_lookup)
    policy = AuthorizationPolicy([A])
    assert (await evaluate(policy, user("a", "Admin"), None, registry)).succeeded
    assert not (await evaluate(policy, ANONYMOUS, None, registry)).succeeded


# -- the property: result == (all requirements succeeded and no fail) --------


@attrs.frozen
class Numbered(Requirement):
    number: int


outcome = st.sampled_from([SUCCEED, ABSTAIN, FAIL])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Numbered], list[tuple[int, str, bool]]]:
    requirements = [Numbered(n) for n in range(draw(st.integers(1, 5)))]
    handlers = draw(
        st.lists(
            st.tuples(st.integers(0, len(requirements) - 1), outcome, st.booleans()),
            max_size=10,
        )
    )
    return requirements, handlers


def handler_for(number: int, verdict: str, is_async: bool) -> Any:
    def decide(context: AuthorizationContext) -> None:
        for requirement in context.requirements_of(Numbered):
            if requirement.number == number:
                if verdict == SUCCEED:
                    context.succeed(requirement)
                elif verdict == FAIL:
                    context.fail(f"veto {number}")

    async def decide_async(context: AuthorizationContext) -> None:
        decide(context)

    return decide_async if is_async else decide


@given(scenario=scenarios(), data=st.data())
def test_result_is_all_succeeded_and_no_fail(
    scenario: tuple[list[Numbered], list[tuple[int, str, bool]]], data: st.DataObject
) -> None:
    requirements, specs = scenario
    succeeded = {number for number, verdict, _ in specs if verdict == SUCCEED}
    failed = [number for number, verdict, _ in specs if verdict == FAIL]
    expected = all(r.number in succeeded for r in requirements) and not failed

    handlers = [(Numbered, handler_for(*spec)) for spec in specs]
    result = check(list(requirements), handlers)
    assert result.succeeded == expected
    assert result.fail_called == bool(failed)
    assert result.failure_reasons == tuple(f"veto {n}" for n in failed)
    assert result.failed_requirements == tuple(r for r in requirements if r.number not in succeeded)

    # The verdict does not depend on the order handlers were registered in.
    shuffled = data.draw(st.permutations(handlers))
    assert check(list(requirements), shuffled).succeeded == expected


# -- purity -----------------------------------------------------------------------


def imported_modules(path: pathlib.Path) -> set[str]:
    """What a module of ``triohub.authorization`` imports, as absolute names (relative
    imports resolved against the installed package; ``from x import y`` gives x and x.y)."""
    package = ["triohub", "authorization"]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) + 1 - node.level] if node.level else []
            module = [*base, *(node.module or "").split(".")] if node.module else base
            names.add(".".join(module))
            names.update(".".join([*module, alias.name]) for alias in node.names)
    return names


def forbidden(name: str) -> bool:
    parts = name.split(".")
    return (
        parts[0] == "trio"
        or parts[0].startswith("trio_")
        or parts[:2] == ["triohub", "actors"]
        or parts[0] in {"engine", "actors"}
        or "hub" in parts
    )


def test_the_boundary_check_sees_trio_the_actors_and_the_hub(tmp_path: pathlib.Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import trio\nfrom ..actors.kit import Reply\nfrom .. import hub\n"
        "from ..hub.server import HubServer\nfrom .policy import AuthorizationPolicy\n"
    )
    names = imported_modules(module)
    assert {"trio", "triohub.actors.kit", "triohub.hub", "triohub.hub.server"} <= names
    assert sorted(filter(forbidden, names)) == [
        "trio",
        "triohub.actors.kit",
        "triohub.actors.kit.Reply",
        "triohub.hub",
        "triohub.hub.server",
        "triohub.hub.server.HubServer",
    ]


@pytest.mark.parametrize(
    "path",
    sorted(pathlib.Path(triohub.authorization.__file__).parent.glob("*.py")),
    ids=lambda p: p.name,
)
def test_the_model_imports_neither_trio_nor_the_hub(path: pathlib.Path) -> None:
    for name in imported_modules(path):
        assert not forbidden(name), f"{path.name} imports {name}"


# -- plan time: which handlers are awaited -------------------------------------------


class Planned(Requirement):
    """Decided by the handlers of the plan tests."""


def _plain(context: AuthorizationContext) -> None:
    if context.principal.is_authenticated:
        for requirement in context.pending(Planned):
            context.succeed(requirement)


async def _async(context: AuthorizationContext) -> None:
    _plain(context)


class _PlainObject:
    def handle(self, context: AuthorizationContext) -> None:
        _plain(context)


class _AsyncObject:
    async def handle(self, context: AuthorizationContext) -> None:
        _plain(context)


class _AsyncCallable:
    async def __call__(self, context: AuthorizationContext) -> None:
        _plain(context)


def _with_prefix(prefix: str, context: AuthorizationContext) -> None:
    _plain(context)


async def _async_with_prefix(prefix: str, context: AuthorizationContext) -> None:
    _plain(context)


KINDS: list[tuple[str, Any, bool]] = [
    ("def", _plain, False),
    ("lambda", lambda context: _plain(context), False),
    ("method", _PlainObject(), False),
    ("partial of a def", functools.partial(_with_prefix, "x"), False),
    ("async def", _async, True),
    ("async method", _AsyncObject(), True),
    ("async __call__", _AsyncCallable(), True),
    ("partial of an async def", functools.partial(_async_with_prefix, "x"), True),
]


@pytest.mark.parametrize(("kind", "handler", "awaited"), KINDS, ids=[k[0] for k in KINDS])
def test_the_plan_knows_which_handlers_are_awaited(kind: str, handler: Any, awaited: bool) -> None:
    registry = PolicyRegistry()
    registry.add_handler(Planned, handler)
    plan = registry.plan(AuthorizationPolicy([Planned(), AuthenticatedUserRequirement()]))
    [own, registered] = plan.steps
    assert own == Step(plan.requirements[1].handle, awaited=False)
    assert registered.awaited is awaited
    assert plan.awaits is awaited
    assert plan.handlers == (own.handler, registered.handler)
    # Either way, the verdict is the same.
    assert run_policy(AuthorizationPolicy([Planned()]), user("u"), None, registry).succeeded
    assert not run_policy(AuthorizationPolicy([Planned()]), ANONYMOUS, None, registry).succeeded


def test_the_plan_is_made_once_per_policy_and_remade_after_add_handler() -> None:
    registry = PolicyRegistry()
    policy = AuthorizationPolicy([Planned()])
    registry.add_handler(Planned, _plain)
    plan = registry.plan(policy)
    assert registry.plan(policy) is plan
    assert not plan.awaits
    registry.add_handler(Planned, _async)
    replanned = registry.plan(policy)
    assert replanned is not plan
    assert replanned.awaits


def test_a_plan_of_plain_functions_is_evaluated_in_place() -> None:
    registry = PolicyRegistry()
    registry.add_handler(Planned, _plain)
    plan = registry.plan(AuthorizationPolicy([Planned()]))
    assert evaluate_plan(plan, user("u")).succeeded
    assert not evaluate_plan(plan, ANONYMOUS).succeeded


def test_a_plan_that_awaits_cannot_be_evaluated_in_place() -> None:
    registry = PolicyRegistry()
    registry.add_handler(Planned, _async)
    policy = AuthorizationPolicy([Planned()])
    with pytest.raises(ValueError, match="evaluate_plan_async"):
        evaluate_plan(registry.plan(policy), user("u"))
    with pytest.raises(ValueError, match="async def"):
        evaluate_sync(policy, user("u"), None, registry)


async def test_an_async_plan_awaits_its_async_handlers_and_calls_the_others() -> None:
    ran: list[str] = []

    def first(context: AuthorizationContext) -> None:
        ran.append("first")

    async def suspends(context: AuthorizationContext) -> None:
        await trio.sleep(1)
        ran.append("suspends")

    def last(context: AuthorizationContext) -> None:
        ran.append("last")
        _plain(context)

    registry = PolicyRegistry()
    for handler in (first, suspends, last, suspends):  # one handler registered twice
        registry.add_handler(Planned, handler)
    plan = registry.plan(AuthorizationPolicy([Planned()]))
    assert [step.awaited for step in plan.steps] == [False, True, False, True]
    result = await evaluate_plan_async(plan, user("u"))
    assert result.succeeded
    assert ran == ["first", "suspends", "last", "suspends"]


def test_a_plain_handler_returning_an_awaitable_is_an_error_not_awaited() -> None:
    """A plain function that returns a coroutine was probably meant to be awaited:
    the plan calls it in place, so its coroutine is refused (and closed, so no
    "never awaited" warning), not taken for a None."""
    ran: list[str] = []

    async def lookup(context: AuthorizationContext) -> None:
        ran.append("lookup")  # pragma: no cover - never awaited
        _plain(context)  # pragma: no cover

    def returns_a_coroutine(context: AuthorizationContext) -> Any:
        return lookup(context)

    registry = PolicyRegistry()
    registry.add_handler(Planned, returns_a_coroutine)
    # Garbage of earlier tests (an unclosed socket's ResourceWarning) is not this
    # test's business: collect it before warnings become errors.
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a "coroutine ... was never awaited" would fail here
        with pytest.raises(TypeError, match="declare it 'async def'"):
            run_policy(AuthorizationPolicy([Planned()]), user("u"), None, registry)
        gc.collect()
    assert ran == []


async def _returns_true(context: AuthorizationContext) -> bool:
    _plain(context)
    return True


def _returns_true_plainly(context: AuthorizationContext) -> bool:
    _plain(context)
    return True


@pytest.mark.parametrize("handler", [_returns_true, _returns_true_plainly])
def test_a_handler_returning_true_is_an_error_sync_or_async(handler: Any) -> None:
    registry = PolicyRegistry()
    registry.add_handler(Planned, handler)
    with pytest.raises(TypeError, match="returned True"):
        run_policy(AuthorizationPolicy([Planned()]), user("u"), None, registry)


def test_the_resource_factory_runs_only_if_a_handler_reads_the_resource() -> None:
    made: list[int] = []

    def make() -> str:
        made.append(1)
        return "the resource"

    seen: list[Any] = []

    def reads(context: AuthorizationContext) -> None:
        seen.append(context.resource)
        seen.append(context.resource)

    registry = PolicyRegistry()
    registry.add_handler(Planned, _plain)
    plan = registry.plan(AuthorizationPolicy([Planned()]))
    evaluate_plan(plan, user("u"), resource_factory=make)
    assert made == []
    registry.add_handler(Planned, reads)
    evaluate_plan(registry.plan(AuthorizationPolicy([Planned()])), user("u"), resource_factory=make)
    assert made == [1]  # once, however often it is read
    assert seen == ["the resource", "the resource"]


def test_the_evaluator_is_plain_code(tmp_path: pathlib.Path) -> None:
    """No bytecode inspection, no hand-driven coroutines, no type: ignore and no
    reading of other objects' private attributes in the authorization path."""
    package = pathlib.Path(triohub.authorization.__file__).parent
    hub = package.parent / "hub"
    files = [*package.glob("*.py"), hub / "authorizer.py", hub / "guard.py"]
    files.append(pathlib.Path(triohub.actors.authorization.__file__))
    for path in files:
        text = path.read_text()
        tree = ast.parse(text)
        names = imported_modules(path)
        assert "dis" not in names, path
        assert "opcode" not in names, path
        calls = [
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        ]
        assert "send" not in calls, path
        assert "throw" not in calls, path
        assert "type: ignore" not in text, path
        # Nobody else's private attributes: only self's (and cls's) underscored names.
        foreign = [
            ast.unparse(node)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
        ]
        assert foreign == [], path
