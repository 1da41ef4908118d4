"""The `sagemaker-release:purpose` tag: what a release's resource is for, beyond its release id.

Guard alarms are replaced by the next successful release of the endpoint; staging endpoint configs
(variant shifts) are never a rollback target.
"""

from __future__ import annotations

PURPOSE_KEY = "sagemaker-release:purpose"
ROLLOUT_GUARD = "rollout-guard"
ROLLOUT_STAGING = "rollout-staging"


def purpose_tag(purpose: str) -> dict[str, str]:
    return {"Key": PURPOSE_KEY, "Value": purpose}
