"""Whether an endpoint can still grow: what a new instance needs is still there, and one starts and answers.

A new SageMaker instance pulls the image from the registry and downloads the model data, so a cleanup
that deleted either breaks the endpoint at its next scale-out, not at once. These checks ask for
both directly, as a new host would, then scale the endpoint out and invoke it.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

import boto3

from tasks.image.image_name import ImageName
from tests.e2e.inspect_stack import embed
from tests.e2e.release_support import wait_for

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


def registry_status(image_uri: str) -> int:
    """HTTP status of the manifest of an ECR image URI in the registry standing in for ECR."""
    name = ImageName.parse(image_uri)
    version = name.digest or name.tag or "latest"
    url = f"http://{os.environ['SAGEMAKER_RELEASE_REGISTRY']}/v2/{name.repository}/manifests/{version}"
    request = urllib.request.Request(url, headers={"Accept": MANIFEST_TYPES}, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def ecr_tags(repository: str) -> list[str]:
    """Tags ECR's API lists in `repository` ([] when the repository is gone)."""
    ecr = boto3.client("ecr")
    try:
        listed = ecr.list_images(repositoryName=repository)["imageIds"]
    except ecr.exceptions.RepositoryNotFoundException:
        return []
    return sorted(str(i["imageTag"]) for i in listed if "imageTag" in i)


def what_a_new_instance_needs(endpoint: str) -> dict[str, Any]:
    """The endpoint's model, its image (ECR API and registry) and its model data, as they are now."""
    sagemaker = boto3.client("sagemaker")
    config = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variant = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
    image = ImageName.parse(container["Image"])
    bucket, _, key = container["ModelDataUrl"].removeprefix("s3://").partition("/")
    size = boto3.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"]
    return {
        "model": variant["ModelName"],
        "image_in_ecr": image.tag in ecr_tags(image.repository),
        "image_in_registry": registry_status(container["Image"]),
        "model_data_bytes": size > 0,
    }


def scale_out_and_answer(endpoint: str, *, to: int = 2, variant: str = "AllTraffic") -> int:
    """Grow the variant to `to` instances (new containers), invoke it, shrink it back to one; the
    length of the embedding it answered while grown."""
    _resize(endpoint, variant, to)
    answered = len(embed(endpoint))
    _resize(endpoint, variant, 1)
    return answered


def _resize(endpoint: str, variant: str, count: int) -> None:
    boto3.client("sagemaker").update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": variant, "DesiredInstanceCount": count}],
    )
    wait_for(
        f"{endpoint} serving on {count} instance(s)",
        lambda: _serving_on(endpoint, variant, count),
        timeout_s=600,
        interval_s=1,
    )


def _serving_on(endpoint: str, variant: str, count: int) -> bool:
    described = boto3.client("sagemaker").describe_endpoint(EndpointName=endpoint)
    if described["EndpointStatus"] == "Failed":
        raise AssertionError(f"{endpoint} failed: {described.get('FailureReason')}")
    current = {v["VariantName"]: v.get("CurrentInstanceCount") for v in described["ProductionVariants"]}
    return described["EndpointStatus"] == "InService" and current.get(variant) == count
