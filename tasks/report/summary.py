"""What a release tells its people: the JSON summary (last line of the CLI) and a Prefect markdown artifact.

The flow's steps put what each returns into `ReleaseSteps`; the report reads that record once the steps
stop (`absorb_steps`), and the ledger after them (`absorb_ledger`), so a failed release reports exactly as
far as it got: what it created and what the unwind did with each resource, where traffic stands, the
smoke results. The flow body stays the steps, with no report fields set between them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext

from tasks.checks.smoke import SmokeResult
from tasks.config import secret_values
from tasks.lifecycle.ledger import Ledger, LedgerEntry
from tasks.report import rollout_chart
from tasks.rollout.runner import RolloutReport

if TYPE_CHECKING:
    from tasks.artifact.model_source import ModelSnapshot
    from tasks.artifact.packaging import ModelArtifact
    from tasks.artifact.storage import UploadedModel
    from tasks.image.release_image import ServingImage
    from tasks.sagemaker.deploy import EndpointState
    from tasks.sagemaker.hosting import LiveEndpoint
    from tasks.sagemaker.scaling import AppliedScaling


@dataclass
class ReleaseSteps:
    """What the release's steps returned, each field set by its step (None: the step has not run).

    `live` is the endpoint as preflight found it (None: no endpoint yet); `unchanged` is set when it
    already served this model and image (nothing deployed); `transform_job` is the DescribeTransformJob
    answer of a batch release."""

    model_source: str
    live: LiveEndpoint | None = None
    snapshot: ModelSnapshot | None = None
    artifact: ModelArtifact | None = None
    uploaded: UploadedModel | None = None
    image: ServingImage | None = None
    model_name: str | None = None
    endpoint_config_name: str | None = None
    endpoint: EndpointState | None = None
    unchanged: LiveEndpoint | None = None
    transform_job: dict[str, Any] | None = None
    smoke_before_traffic: SmokeResult | None = None
    rollout: RolloutReport | None = None
    scaling: AppliedScaling | None = None
    smoke: SmokeResult | None = None

    def keep_rollout(self, rollout: RolloutReport) -> None:
        """The rollout's on_report hook: the latest state of the shift (also when it fails)."""
        self.rollout = rollout


@dataclass
class ReleaseReport:
    """The release as far as it got; every field is optional until its step has run."""

    release_id: str
    endpoint_name: str
    endpoint_type: str
    started: float = field(default_factory=time.monotonic)
    status: str = "running"
    action: str | None = None  # created | updated | unchanged | transformed
    model_source: str | None = None
    model_commit: str | None = None
    model_data_url: str | None = None
    uploaded_bytes: int = 0
    package_reused: bool = False  # the archive of the same files was already on this worker
    image_uri: str | None = None
    image_digest: str | None = None
    image_built: bool = False
    image_pushed: bool = False
    model_name: str | None = None
    endpoint_config_name: str | None = None
    previous_config: str | None = None
    endpoint_arn: str | None = None
    transform_output: str | None = None
    scaling: AppliedScaling | None = None  # what is registered for the variant once the release stands
    smoke: SmokeResult | None = None
    smoke_before_traffic: SmokeResult | None = None  # the new variant at weight 0 (variant_shift)
    rollout: RolloutReport | None = None  # the traffic shift, step by step (also when it failed)
    retired: tuple[str, ...] = ()  # what older releases left and the retention deleted
    error: str | None = None
    ledger_location: str | None = None
    entries: list[LedgerEntry] = field(default_factory=list)

    def absorb_ledger(self, ledger: Ledger) -> None:
        self.entries = list(ledger.entries)
        self.ledger_location = ledger.store.describe()

    def publish_awaiting_approval(self, steps: ReleaseSteps, ledger: Ledger) -> None:
        """The artifact as the approver sees it while the rollout waits (rollout.approval: manual)."""
        self.absorb_steps(steps)
        self.absorb_ledger(ledger)
        self.status = "awaiting approval"
        try:
            self.publish()
        finally:
            self.status = "running"

    def absorb_steps(self, steps: ReleaseSteps) -> None:
        """Everything the steps returned, as far as they got; fields of steps that did not run stay."""
        if steps.snapshot is not None:
            self.model_source, self.model_commit = steps.model_source, steps.snapshot.commit
        if steps.artifact is not None:
            self.package_reused = steps.artifact.reused
        if steps.uploaded is not None:
            self.model_data_url = steps.uploaded.model_data_url
            self.uploaded_bytes = steps.uploaded.uploaded_bytes
        if steps.image is not None:
            self.image_uri, self.image_digest = steps.image.uri, steps.image.digest
            self.image_built, self.image_pushed = steps.image.built, steps.image.pushed
        self.model_name = steps.model_name or self.model_name
        self.endpoint_config_name = steps.endpoint_config_name or self.endpoint_config_name
        if steps.live is not None and steps.endpoint_config_name is not None:
            # From the moment the release's config exists, the live endpoint is being moved off this one.
            self.previous_config = steps.live.config_name
        if steps.endpoint is not None:
            self.action, self.endpoint_arn = steps.endpoint.action, steps.endpoint.arn
        if steps.unchanged is not None:
            self.action = "unchanged"
            self.endpoint_config_name = steps.unchanged.config_name
            self.model_name = steps.unchanged.variants[0].model_name
        if steps.transform_job is not None:
            self.action = "transformed"
            self.transform_output = steps.transform_job.get("TransformOutput", {}).get("S3OutputPath")
        self.smoke_before_traffic = steps.smoke_before_traffic or self.smoke_before_traffic
        self.rollout = steps.rollout or self.rollout
        self.scaling = steps.scaling or self.scaling
        self.smoke = steps.smoke or self.smoke

    def summary(self) -> dict[str, Any]:
        """The machine-readable outcome: the CLI prints it as its last line."""
        smoke = self.smoke.summary() if self.smoke is not None else {"passed": None, "n": 0, "p50_ms": None}
        return {
            "release_id": self.release_id,
            "endpoint_name": self.endpoint_name,
            "endpoint_config_name": self.endpoint_config_name,
            "model_data_url": self.model_data_url,
            "image_uri": self.image_uri,
            "status": self.status,
            "action": self.action,
            "uploaded_bytes": self.uploaded_bytes,
            "package_reused": self.package_reused,
            "image_built": self.image_built,
            "smoke": smoke,
            "smoke_before_traffic": self.smoke_before_traffic.summary()
            if self.smoke_before_traffic is not None
            else None,
            "model_name": self.model_name,
            "previous_config": self.previous_config,
            "rollout": self.rollout.as_dict() if self.rollout is not None else None,
            "scaling": _scaling_summary(self.scaling),
            "retired": list(self.retired),
            "duration_s": round(time.monotonic() - self.started, 1),
            "ledger": self.ledger_location,
            # Masked again here, the last stop before stdout and the flow's result.
            "error": secret_values.redact(self.error) if self.error else self.error,
        }

    def markdown(self) -> str:
        lines = [
            f"# Release `{self.release_id}` of `{self.endpoint_name}`: **{self.status}**",
            "",
        ]
        if self.error:
            lines += [f"> {secret_values.redact(self.error)}", ""]
        lines += ["## Where traffic stands", "", *self._traffic(), ""]
        lines += ["## Model and image", ""]
        lines += [
            f"- model: {self.model_source or '-'} (commit `{self.model_commit or '-'}`)",
            f"- model data: `{self.model_data_url or '-'}` ({_upload_note(self)})",
            f"- image: `{self.image_uri or '-'}` {_image_note(self)}",
            "",
        ]
        if self.rollout is not None:
            lines += [rollout_chart.markdown(self.rollout), ""]
            lines += [*_approval_lines(self.rollout)]
        if self.endpoint_type != "batch":
            lines += ["## Autoscaling", "", *_scaling_lines(self.scaling, self.status), ""]
        if self.retired:
            lines += ["Retired from older releases: " + ", ".join(f"`{r}`" for r in self.retired), ""]
        lines += ["## Smoke test", "", *self._smoke(), ""]
        lines += ["## Resources of this release", "", *self._resources()]
        if self.ledger_location:
            lines += ["", f"Ledger: `{self.ledger_location}`"]
        return "\n".join(lines) + "\n"

    def _traffic(self) -> list[str]:
        if self.endpoint_type == "batch":
            return [f"Batch transform, no endpoint left running. Output: `{self.transform_output or '-'}`"]
        if self.status == "invalid":
            return [f"Endpoint `{self.endpoint_name}` was not touched: the release was refused up front."]
        if self.status == "awaiting approval" and self.rollout is not None and self.rollout.steps:
            share = self.rollout.steps[-1].weight_percent
            return [
                f"Endpoint `{self.endpoint_name}`: **{share:g}%** of traffic on the new model "
                f"(`{self.rollout.new_variant}`), the rest on the previous one. **Waiting for approval**: "
                "resume this flow run with a decision (promote or roll back)."
            ]
        if self.status == "failed":
            name = f"Endpoint `{self.endpoint_name}`"
            if self.previous_config:
                return [f"{name} was put back on its previous config `{self.previous_config}`."]
            return [f"{name} did not go live; everything this release created was removed."]
        verb = {"created": "was created on", "updated": "moved to", "unchanged": "already served"}.get(
            self.action or "", "serves"
        )
        text = (
            f"Endpoint `{self.endpoint_name}` {verb} config `{self.endpoint_config_name}`: 100% of traffic."
        )
        if self.action == "unchanged":
            text = f"**Unchanged**: {text} Nothing was deployed; the smoke test checked what serves."
        if self.previous_config and self.action == "updated":
            text += f" Previous config `{self.previous_config}` is kept for rollback."
        return [text + (f" ARN `{self.endpoint_arn}`" if self.endpoint_arn else "")]

    def _smoke(self) -> list[str]:
        lines: list[str] = []
        if self.smoke_before_traffic is not None:
            lines += ["Before traffic, on the new variant at weight 0:", ""]
            lines += [*_smoke_lines(self.smoke_before_traffic), ""]
            lines += ["On the endpoint:" if self.smoke is not None else "On the endpoint: not run.", ""]
        if self.smoke is not None:
            return lines + _smoke_lines(self.smoke)
        if lines:
            return lines
        return ["Not run." if self.status != "failed" else "Not run, or failed (see the error above)."]

    def _resources(self) -> list[str]:
        """State first, then what and which: a long ARN or URI is shortened in the table (it would push the
        state off screen) and given in full in the numbered notes below it."""
        if not self.entries:
            return ["Nothing was created (everything already existed)."]
        lines = ["| state | # | kind | resource |", "| --- | --- | --- | --- |"]
        notes: list[str] = []
        for entry in self.entries:
            full = str(entry.attrs.get("arn") or entry.attrs.get("uri") or entry.resource_id)
            state = {"created": "live", "kept": "kept (in use)"}.get(entry.status, entry.status)
            if entry.attrs.get("previous_config") and entry.status == "created":
                state = f"updated from `{entry.attrs['previous_config']}`"
            shown = f"`{full}`"
            if len(full) > SHORT_ID:
                notes.append(full)
                shown = f"`{_shortened(full)}` [{len(notes)}]"
            lines.append(f"| {state} | {entry.seq} | {entry.kind} | {shown} |")
        if notes:
            lines += ["", *(f"{n}. `{full}`" for n, full in enumerate(notes, start=1))]
        return lines

    def publish(self) -> str | None:
        """The markdown artifact (key `release-<endpoint>`, so releases of one endpoint version together)."""
        if FlowRunContext.get() is None:
            return None
        key = re.sub(r"[^a-z0-9-]+", "-", f"release-{self.endpoint_name}".lower()).strip("-")
        artifact_id = create_markdown_artifact(
            markdown=self.markdown(),
            key=key,
            description=f"Release {self.release_id} of {self.endpoint_name}: {self.status}",
        )
        return str(artifact_id)

    def summary_line(self) -> str:
        return json.dumps(self.summary(), sort_keys=False)


SHORT_ID = 60  # characters of an identifier shown in the resources table before it is shortened


def _shortened(identifier: str) -> str:
    """An ARN or URI as its last path segment (its name), e.g. `…/model/demo-embedder-r1`."""
    head, _, name = identifier.rstrip("/").rpartition("/")
    if not head or len(name) > SHORT_ID:
        return identifier[: SHORT_ID // 2] + "…" + identifier[-SHORT_ID // 2 :]
    kind = head.rpartition(":")[2].rpartition("/")[2]
    return f"…{kind}/{name}" if kind and len(kind) < 30 else f"…/{name}"


def _approval_lines(rollout: RolloutReport) -> list[str]:
    """The approval gate's line under the traffic shift: who decided what, and why."""
    if rollout.awaiting_approval:
        return ["**Approval**: waiting for a decision (Resume this flow run: promote or roll back).", ""]
    if rollout.approval is None:
        return []
    return [f"**Approval**: {_escaped(rollout.approval.line())}", ""]


def _escaped(text: str) -> str:
    """A person's words as plain text in markdown: no link, emphasis or HTML of theirs renders."""
    return re.sub(r"([\\`*_{}\[\]()<>#|!~])", r"\\\1", text)


def _smoke_lines(result: SmokeResult) -> list[str]:
    lines = [
        f"**{'passed' if result.passed else 'failed'}**: {result.n} requests, "
        f"p50 {result.p50_ms} ms, p95 {result.p95_ms} ms",
        "",
    ]
    failed = set(result.failures)
    for check in result.checks:
        mark = "FAIL" if any(f.startswith(check) for f in failed) else "ok"
        lines.append(f"- {mark} `{check}`")
    return lines


def _upload_note(report: ReleaseReport) -> str:
    uploaded = f"{_bytes(report.uploaded_bytes)} uploaded"
    if report.package_reused:
        return f"archive reused from an earlier release on this worker, {uploaded}"
    return uploaded


def _bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _image_note(report: ReleaseReport) -> str:
    if report.image_built:
        return "(built and pushed by this release)"
    if report.image_pushed:
        return "(pushed by this release)"
    return "(already in the registry)"


def _scaling_summary(applied: AppliedScaling | None) -> dict[str, Any] | None:
    if applied is None:
        return None
    return {
        "resource_id": applied.resource_id,
        "min_capacity": applied.min_capacity,
        "max_capacity": applied.max_capacity,
        "changed": applied.changed,
        "policies": [policy.name for policy in applied.policies],
        "alarms": [alarm.name for alarm in applied.alarms],
    }


def _scaling_lines(applied: AppliedScaling | None, status: str) -> list[str]:
    """The registration, its policies and the alarms that drive them (the target tracking ones are made
    by Application Auto Scaling: this is where a release manager finds their names and thresholds)."""
    if applied is None:
        if status == "failed":
            return ["Not registered (the release did not get there, or its registration was undone)."]
        return ["Not registered: the endpoint keeps a fixed instance count."]
    note = "registered by this release" if applied.changed else "unchanged, it already matched the config"
    lines = [
        f"`{applied.resource_id}`: **{applied.min_capacity}-{applied.max_capacity} instances** ({note}).",
        "",
    ]
    if applied.policies:
        lines += ["| policy | type | rule |", "| --- | --- | --- |"]
        lines += [f"| `{p.name}` | {p.type} | {p.rule} |" for p in applied.policies]
        lines.append("")
    if applied.alarms:
        lines += ["| state | alarm | drives | condition |", "| --- | --- | --- | --- |"]
        lines += [f"| {a.state} | `{a.name}` | `{a.policy}` | {a.condition} |" for a in applied.alarms]
    else:
        lines.append("No alarm drives these policies yet.")
    return lines
