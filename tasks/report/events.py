"""The release's Prefect event, for automations (Slack, email, a webhook) to act on.

Each release ends with one event named after its outcome:

    sagemaker-release.release.succeeded     the endpoint serves the release (or already did: unchanged)
    sagemaker-release.release.failed        the release failed; what it created was unwound
    sagemaker-release.release.rolled-back   the rollout's alarm fired and sent traffic back
    sagemaker-release.release.invalid       pre-flight refused the config; nothing was touched

Its resource is the endpoint (`sagemaker-release.endpoint.<name>`), its payload the release's JSON
summary; Prefect adds the flow run, flow, deployment and work pool as related resources.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.events import emit_event

from tasks.core.logs import run_logger

EVENT_PREFIX = "sagemaker-release.release."
ENDPOINT_RESOURCE_PREFIX = "sagemaker-release.endpoint."

Outcome = Literal["succeeded", "failed", "rolled-back", "invalid"]


def outcome(summary: dict[str, Any]) -> Outcome:
    """The event's last word, from the summary: a failure whose rollout ended rolled back is `rolled-back`."""
    status = summary.get("status")
    if status == "succeeded":
        return "succeeded"
    if status == "invalid":
        return "invalid"
    rollout = summary.get("rollout") or {}
    if rollout.get("outcome") == "rolled back":
        return "rolled-back"
    return "failed"


def event_name(summary: dict[str, Any]) -> str:
    return EVENT_PREFIX + outcome(summary)


def endpoint_resource(summary: dict[str, Any]) -> dict[str, str]:
    """The endpoint as a Prefect resource; an automation matches it by id, name or release id."""
    name = str(summary["endpoint_name"])
    return {
        "prefect.resource.id": ENDPOINT_RESOURCE_PREFIX + name,
        "prefect.resource.name": name,
        "sagemaker-release.release-id": str(summary.get("release_id") or ""),
        "sagemaker-release.status": str(summary.get("status") or ""),
    }


def emit_release_event(summary: dict[str, Any]) -> str | None:
    """Emit the release's event; its id, or None when this process sends no events.

    A notification is not part of the release: an event that cannot be sent is logged, and the release's
    outcome stands as it is."""
    try:
        event = emit_event(event=event_name(summary), resource=endpoint_resource(summary), payload=summary)
    except Exception as exc:  # the release already happened: its outcome must not change
        run_logger().warning("release %s: its event was not sent: %s", summary.get("release_id"), exc)
        return None
    return str(event.id) if event is not None else None
