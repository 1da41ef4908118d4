"""The SageMaker hosting tutorial, unchanged, on the local stack: the real serving image serving the
real all-MiniLM-L6-v2, driven by plain boto3 exactly as a user's notebook drives AWS."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.emulator.emulator_support import ROLE_ARN, Aws, unique

pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow]

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."]


def test_create_wait_invoke_delete(aws: Aws, serving_ecr_image: str, minilm_model_data: str) -> None:
    sagemaker, runtime = aws.sagemaker, aws.runtime
    model_name, config_name, endpoint_name = (
        unique("minilm"),
        unique("minilm-config"),
        unique("minilm-endpoint"),
    )

    sagemaker.create_model(
        ModelName=model_name,
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": serving_ecr_image, "ModelDataUrl": minilm_model_data},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
    try:
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint_name, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
        )
        described = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        assert described["ProductionVariants"][0]["DeployedImages"][0]["ResolvedImage"].startswith(
            serving_ecr_image.rsplit(":", 1)[0] + "@sha256:"
        )

        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps({"inputs": SENTENCES}),
        )
        assert response["InvokedProductionVariant"] == "AllTraffic"
        assert response["ContentType"] == "application/json"
        vectors = np.asarray(json.loads(response["Body"].read()))
        assert vectors.shape == (3, 384)
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        similar, unrelated = unit[0] @ unit[1], unit[0] @ unit[2]
        assert similar > 0.6 > unrelated, (similar, unrelated)

        def embed(text: str) -> int:
            body = runtime.invoke_endpoint(
                EndpointName=endpoint_name, ContentType="application/json", Body=json.dumps({"inputs": text})
            )
            return len(json.loads(body["Body"].read()))

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(embed, [f"sentence number {i}" for i in range(16)])) == [384] * 16

        with pytest.raises(runtime.exceptions.ModelError) as raised:
            runtime.invoke_endpoint(
                EndpointName=endpoint_name, ContentType="application/json", Body=b"{not json"
            )
        assert 400 <= raised.value.response["OriginalStatusCode"] < 500
    finally:
        sagemaker.delete_endpoint(EndpointName=endpoint_name)
        sagemaker.get_waiter("endpoint_deleted").wait(
            EndpointName=endpoint_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        sagemaker.delete_endpoint_config(EndpointConfigName=config_name)
        sagemaker.delete_model(ModelName=model_name)
