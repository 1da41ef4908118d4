"""Helpers for driving the local stack the way a user's own script does: plain boto3 clients.

Images reach the emulator as they do in a release: pushed to the local registry and named in
CreateModel by their ECR URI.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from emulator import settings

HERE = Path(__file__).resolve().parent
ECR_HOST = f"{settings.ACCOUNT_ID}.dkr.ecr.{settings.DEFAULT_REGION}.amazonaws.com"
ROLE_ARN = f"arn:aws:iam::{settings.ACCOUNT_ID}:role/emulator-tests"


@dataclass(frozen=True)
class Aws:
    sagemaker: Any
    runtime: Any
    s3: Any
    sns: Any
    sqs: Any


def make_clients(env: dict[str, str]) -> Aws:
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    config = Config(retries={"max_attempts": 2, "mode": "standard"}, read_timeout=90)
    return Aws(
        sagemaker=session.client("sagemaker", endpoint_url=env["AWS_ENDPOINT_URL_SAGEMAKER"], config=config),
        runtime=session.client(
            "sagemaker-runtime", endpoint_url=env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"], config=config
        ),
        s3=session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], config=config),
        sns=session.client("sns", endpoint_url=env["AWS_ENDPOINT_URL"], config=config),
        sqs=session.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL"], config=config),
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def push_to_registry(local_ref: str, repository: str) -> str:
    """Push a local image to the registry standing in for ECR; returns its ECR URI."""
    tag = local_ref.rsplit(":", 1)[-1]
    target = f"{settings.registry_host()}/{repository}:{tag}"
    subprocess.run(["docker", "tag", local_ref, target], check=True, capture_output=True)
    subprocess.run(["docker", "push", "-q", target], check=True, capture_output=True)
    return f"{ECR_HOST}/{repository}:{tag}"


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder_tarball(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    return buffer.getvalue()


@dataclass
class Resources:
    """Creates SageMaker resources for one test and deletes all of them afterwards."""

    aws: Aws
    bucket: str
    models: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)

    def upload(self, body: bytes, key: str | None = None) -> str:
        key = key or f"{unique('data')}/model.tar.gz"
        self.aws.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"s3://{self.bucket}/{key}"

    def model(self, image: str, model_data: str | None = None, **extra: Any) -> str:
        name = unique("model")
        container: dict[str, Any] = {"Image": image, **extra.pop("container", {})}
        if model_data:
            container["ModelDataUrl"] = model_data
        params: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": ROLE_ARN, **extra}
        if "Containers" not in params:
            params["PrimaryContainer"] = container
        self.aws.sagemaker.create_model(**params)
        self.models.append(name)
        return name

    def config(self, variants: list[dict[str, Any]], **extra: Any) -> str:
        name = unique("config")
        self.aws.sagemaker.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=variants, **extra
        )
        self.configs.append(name)
        return name

    def endpoint(self, config_name: str, **extra: Any) -> str:
        name = unique("endpoint")
        self.aws.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config_name, **extra)
        self.endpoints.append(name)
        return name

    def single(self, model_name: str, instances: int = 1, **variant: Any) -> str:
        """A one-variant endpoint config for `model_name`."""
        spec = {
            "VariantName": "AllTraffic",
            "ModelName": model_name,
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": instances,
            **variant,
        }
        return self.config([spec])

    def wait_status(self, endpoint: str, wanted: str, timeout: float = 180) -> dict[str, Any]:
        return wait_for_status(self.aws, endpoint, wanted, timeout)

    def cleanup(self) -> None:
        for name in self.endpoints:
            delete_endpoint(self.aws, name)
        for name in self.configs:
            _ignore_missing(self.aws.sagemaker.delete_endpoint_config, EndpointConfigName=name)
        for name in self.models:
            _ignore_missing(self.aws.sagemaker.delete_model, ModelName=name)


def _ignore_missing(call: Callable[..., Any], **params: str) -> None:
    try:
        call(**params)
    except ClientError as error:
        if "Could not find" not in error.response["Error"]["Message"]:
            raise


def wait_for_status(aws: Aws, endpoint: str, wanted: str, timeout: float = 180) -> dict[str, Any]:
    """Poll DescribeEndpoint until `wanted` or a settled status (InService, Failed), with a timeout."""
    deadline = time.monotonic() + timeout
    while True:
        described = aws.sagemaker.describe_endpoint(EndpointName=endpoint)
        status = described["EndpointStatus"]
        if status == wanted or status in ("InService", "Failed"):
            return described
        if time.monotonic() >= deadline:
            raise AssertionError(f"endpoint {endpoint} still {status} after {timeout} s (wanted {wanted})")
        time.sleep(0.5)


def delete_endpoint(aws: Aws, name: str, timeout: float = 180) -> None:
    """Delete an endpoint once it may be deleted, and wait until it is gone."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = aws.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
        except ClientError as error:
            if "Could not find" in error.response["Error"]["Message"]:
                return
            raise
        if status in ("InService", "Failed"):
            aws.sagemaker.delete_endpoint(EndpointName=name)
        if time.monotonic() >= deadline:
            raise AssertionError(f"endpoint {name} still {status} after {timeout} s; could not delete it")
        time.sleep(0.5)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((settings.HOST, 0))
        return int(sock.getsockname()[1])


class PrivateEmulator:
    """A second SageMaker emulator process with its own state folder, ports and limits.

    It shares the stack's moto and registry but never the shared emulator's endpoints or containers,
    so tests can restart it, kill its containers or shorten its timeouts without disturbing anyone.
    """

    def __init__(self, state: Path, stack_env: dict[str, str], **limits: str) -> None:
        import hashlib
        import os
        import sys

        self.state = state
        self.control_port, self.runtime_port = free_port(), free_port()
        self.env = {**os.environ, **stack_env, **limits, "SAGEMAKER_RELEASE_STATE_DIR": str(state)}
        self.client_env = {
            **stack_env,
            "AWS_ENDPOINT_URL_SAGEMAKER": f"http://{settings.HOST}:{self.control_port}",
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://{settings.HOST}:{self.runtime_port}",
            # Its control plane serves Application Auto Scaling for its own endpoints.
            "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": f"http://{settings.HOST}:{self.control_port}",
        }
        self.owner = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
        self.command = [
            sys.executable,
            "-m",
            "emulator.server",
            "--state",
            str(state),
            "--control-port",
            str(self.control_port),
            "--runtime-port",
            str(self.runtime_port),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.state / "emulator.log"

    def start(self, timeout: float = 60) -> None:
        import httpx

        self.state.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=settings.REPO_ROOT
            )
        deadline = time.monotonic() + timeout
        url = f"http://{settings.HOST}:{self.control_port}/_emulator/health"
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() >= deadline:
                raise AssertionError(f"private emulator did not start; log:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def containers(self) -> list[Any]:
        import docker

        return docker.from_env().containers.list(
            all=True, filters={"label": f"sagemaker-release.owner={self.owner}"}
        )

    def remove_containers(self) -> None:
        for container in self.containers():
            container.remove(force=True)
