"""Only tasks/sagemaker holds SageMaker and Application Auto Scaling clients (ARCHITECTURE.md).

import-linter cannot check this rule: the service is a string argument (`aws.client("sagemaker")`), not
an import. So this test reads the syntax tree of every module of tasks/ and flows/ and names each call
outside tasks/sagemaker that builds such a client: `client("sagemaker")` on any object (aws, boto3, a
session), the same through a name bound to the string anywhere in the module, and the typed factories
`aws.sagemaker()` / `aws.autoscaling()`. SageMaker Runtime (the data plane) is allowed everywhere.
What an AST cannot see (a service name computed at run time) stays a reviewer's job.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("tasks", "flows")
# The room allowed to hold the clients, and the module that defines the factories.
ALLOWED = (ROOT / "tasks" / "sagemaker", ROOT / "tasks" / "core" / "aws.py")
CONTROL_PLANE_SERVICES = frozenset({"sagemaker", "application-autoscaling"})
FACTORIES = frozenset({"sagemaker", "autoscaling"})
FIX = "fix: call a function of tasks/sagemaker (hosting.py, lookup.py, scaling.py) or add one there"


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    call: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.call} outside tasks/sagemaker; {FIX}"


def _string_names(tree: ast.AST) -> dict[str, set[str]]:
    """Every name the module binds to a string literal, anywhere (module, function, class)."""
    bound: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            for target in targets:
                if isinstance(target, ast.Name):
                    bound.setdefault(target.id, set()).add(value.value)
    return bound


def _services(arg: ast.expr, bound: dict[str, set[str]]) -> set[str]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return {arg.value}
    if isinstance(arg, ast.Name):
        return bound.get(arg.id, set())
    return set()


def _factory_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> factory, for `from tasks.core.aws import sagemaker [as x]`."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "tasks.core.aws":
            names |= {
                alias.asname or alias.name: alias.name for alias in node.names if alias.name in FACTORIES
            }
    return names


def violations(source: str, path: str) -> list[Violation]:
    """The calls in `source` that build a SageMaker or Application Auto Scaling client."""
    tree = ast.parse(source, filename=path)
    bound = _string_names(tree)
    factories = _factory_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "client":
            args = [*node.args[:1], *(k.value for k in node.keywords if k.arg in ("service", "service_name"))]
            for service in sorted(set().union(*(_services(a, bound) for a in args)) & CONTROL_PLANE_SERVICES):
                found.append(Violation(path, node.lineno, f"client({service!r})"))
        elif (
            isinstance(func, ast.Attribute)
            and name in FACTORIES
            and isinstance(func.value, ast.Name)
            and func.value.id == "aws"
        ) or (isinstance(func, ast.Name) and name in factories):
            found.append(Violation(path, node.lineno, f"aws.{factories.get(name, name)}()"))
    return sorted(found, key=lambda v: v.line)


def _modules() -> list[Path]:
    return sorted(
        path
        for top in SCANNED
        for path in (ROOT / top).rglob("*.py")
        if not any(path == allowed or allowed in path.parents for allowed in ALLOWED)
    )


def test_only_tasks_sagemaker_builds_sagemaker_and_autoscaling_clients() -> None:
    modules = _modules()
    assert len(modules) > 30, f"found only {len(modules)} modules under {SCANNED}: is ROOT {ROOT} right?"
    found = [v for path in modules for v in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "\n".join(map(str, found))


def test_the_check_sees_the_calls_tasks_sagemaker_makes() -> None:
    # The allowed room is skipped, not blind: read as if it lived elsewhere, it is full of such calls.
    hosting = ROOT / "tasks" / "sagemaker" / "hosting.py"
    scaling = ROOT / "tasks" / "sagemaker" / "scaling.py"
    assert violations(hosting.read_text(), "hosting.py")
    assert violations(scaling.read_text(), "scaling.py")


def test_a_synthetic_module_is_refused_naming_file_and_line() -> None:
    source = """\
from tasks.core import aws
from tasks.core.aws import sagemaker as sm
import boto3

SERVICE = "application-autoscaling"


def f() -> None:
    aws.client("sagemaker").describe_endpoint(EndpointName="e")
    aws.client(SERVICE).describe_scalable_targets(ServiceNamespace="sagemaker")
    boto3.client(service_name="sagemaker")
    aws.sagemaker().list_models()
    aws.autoscaling()
    sm()
    name: str = "sagemaker"
    boto3.session.Session().client(name)
    aws.client("sagemaker-runtime").invoke_endpoint(EndpointName="e", Body=b"")
    aws.client("s3")
    aws.sagemaker_runtime()
"""
    found = violations(source, "tasks/rollout/bad.py")
    assert [(v.line, v.call) for v in found] == [
        (9, "client('sagemaker')"),
        (10, "client('application-autoscaling')"),
        (11, "client('sagemaker')"),
        (12, "aws.sagemaker()"),
        (13, "aws.autoscaling()"),
        (14, "aws.sagemaker()"),
        (16, "client('sagemaker')"),
    ]
    assert str(found[0]).startswith("tasks/rollout/bad.py:9: client('sagemaker') outside tasks/sagemaker;")


def test_data_plane_and_other_services_pass() -> None:
    source = """\
from tasks.core import aws

RUNTIME = "sagemaker-runtime"
aws.client(RUNTIME).invoke_endpoint(EndpointName="e", Body=b"")
aws.client("cloudwatch").describe_alarms()
aws.sagemaker_runtime()
aws.s3()
"""
    assert violations(source, "tasks/checks/ok.py") == []
