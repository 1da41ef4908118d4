"""Benchmark: package and upload a 1 GiB fp16 weight file, against `tar -czf` and a single-part upload.

    .venv/bin/python bench/package_upload.py [--size-mib 1024] [--endpoint-url http://127.0.0.1:4566]

The weights are what a real checkpoint looks like to a compressor: normal(0, 0.02) values cast to
float16 in a safetensors file (the exponent bits compress a little, the mantissa bits do not) -- not
zeros, which flatter every compressor, nor random bytes, which nothing compresses. Both packagers and
both uploads run in the same process on the same file, so the machine's load affects them alike. The
uploads go to a moto server started here on a free port (or the one given). The last line printed is
a JSON object with every number.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Python puts a script's folder first on sys.path, where a script named like a distribution or package
# would shadow it (this one was once bench/packaging.py, which hid `packaging` from prefect); bench/
# holds scripts, not modules. Put the repository there instead, for `tasks`.
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import numpy as np  # noqa: E402

from tasks.artifact.model_source import ModelSnapshot  # noqa: E402
from tasks.artifact.packaging import build_artifact, worker_threads  # noqa: E402
from tasks.artifact.storage import ensure_bucket, store_artifact  # noqa: E402
from tasks.config import PackagingConfig, StorageConfig  # noqa: E402
from tasks.core import aws  # noqa: E402
from tasks.lifecycle.ledger import Ledger, LocalLedgerStore  # noqa: E402

MIB = 1 << 20
CHUNK_VALUES = 16 * MIB  # float16 values generated per step (32 MiB)
GOAL_SPEEDUP = 30.0
SERVER_START_TIMEOUT_S = 30.0


def write_weights(path: Path, size_bytes: int, seed: int = 0) -> None:
    """A safetensors file holding one float16 tensor of normal(0, 0.02) values, `size_bytes` of data."""
    values = size_bytes // 2
    header = json.dumps(
        {"model.embed.weight": {"dtype": "F16", "shape": [values], "data_offsets": [0, values * 2]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    rng = np.random.default_rng(seed)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(header)) + header)
        left = values
        while left:
            count = min(CHUNK_VALUES, left)
            out.write(rng.normal(0.0, 0.02, count).astype(np.float16).tobytes())
            left -= count


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_tar_czf(source: Path, dest: Path) -> tuple[float, float]:
    """(wall s, CPU s) of `tar -czf`, whose gzip runs as tar's child."""
    cpu = _children_cpu_s()
    start = time.perf_counter()
    subprocess.run(["tar", "-czf", str(dest), "-C", str(source), "."], check=True)
    return time.perf_counter() - start, _children_cpu_s() - cpu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server(endpoint_url: str | None, log_dir: Path) -> Iterator[str]:
    """The given S3 endpoint, or a moto server of our own on a free port (stopped afterwards)."""
    if endpoint_url:
        yield endpoint_url
        return
    port = _free_port()
    log = (log_dir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}; see {log_dir / 'moto.log'}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"moto_server did not listen on {url} within {SERVER_START_TIMEOUT_S} s"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="weight file size (MiB)")
    parser.add_argument("--endpoint-url", help="S3 endpoint to use instead of starting moto_server")
    parser.add_argument("--workdir", type=Path, help="where to write the files (default: a temp dir)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-packaging-", dir=args.workdir))
    try:
        results = run(work, args.size_mib * MIB, args.endpoint_url)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, sort_keys=True))


def run(work: Path, size_bytes: int, endpoint_url: str | None) -> dict[str, object]:
    # Both sides share the machine; a busy one slows the multi-threaded side more, so say how busy it was.
    load_at_start = round(os.getloadavg()[0], 2)
    model = work / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["BertModel"], "torch_dtype": "float16"}')
    weights = model / "model.safetensors"
    started = time.perf_counter()
    write_weights(weights, size_bytes)
    source_bytes = sum(p.stat().st_size for p in model.iterdir())
    print(f"generated {source_bytes / MIB:.0f} MiB of fp16 weights in {time.perf_counter() - started:.1f} s")

    baseline_path = work / "baseline.tar.gz"
    baseline_s, baseline_cpu_s = timed_tar_czf(model, baseline_path)
    baseline_size = baseline_path.stat().st_size
    baseline_ratio = baseline_size / source_bytes
    print(f"tar -czf: {baseline_s:.2f} s ({baseline_cpu_s:.1f} CPU s), ratio {baseline_ratio:.4f}")

    config = PackagingConfig()
    snapshot = ModelSnapshot(str(model), ("config.json", "model.safetensors"), source_bytes)
    started, cpu = time.perf_counter(), time.process_time()
    artifact = build_artifact(snapshot, config, work / "packages")
    ours_s, ours_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    threads = worker_threads(config.threads)
    ratio = artifact.size_bytes / source_bytes
    print(
        f"sagemaker-release (isal level {config.compression_level}, {threads} threads): "
        f"{ours_s:.2f} s, ratio {ratio:.4f}"
    )
    baseline_path.unlink()  # free the page cache for the uploads

    with moto_server(endpoint_url, work) as url:
        os.environ.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        aws.reset_clients()
        storage = StorageConfig(bucket=f"bench-{os.getpid()}", prefix="bench", create_bucket=True)
        ensure_bucket(storage)
        s3 = aws.client("s3")

        started = time.perf_counter()
        with open(artifact.path, "rb") as body:
            s3.put_object(Bucket=storage.bucket, Key="single-part/model.tar.gz", Body=body)
        single_s = time.perf_counter() - started
        s3.delete_object(Bucket=storage.bucket, Key="single-part/model.tar.gz")
        print(f"single-part put_object: {single_s:.2f} s")

        ledger = Ledger.open(LocalLedgerStore(work / "ledger.json"), "bench")
        started = time.perf_counter()
        first = store_artifact(artifact, storage, ledger, on_progress=lambda _: None)
        multipart_s = time.perf_counter() - started
        print(
            f"multipart upload ({storage.max_concurrency} parts at once, {storage.multipart_chunk_mb} MiB): "
            f"{multipart_s:.2f} s"
        )
        started = time.perf_counter()
        again = store_artifact(artifact, storage, ledger, on_progress=lambda _: None)
        rerun_s = time.perf_counter() - started
        print(f"second upload of the same model: {again.uploaded_bytes} bytes in {rerun_s:.3f} s")

    speedup = baseline_s / ours_s
    ours_ratio = artifact.size_bytes / source_bytes
    return {
        "load_average_1m_at_start": load_at_start,
        "source_bytes": source_bytes,
        "cpus": worker_threads(0),
        "baseline_tar_czf_s": round(baseline_s, 3),
        "baseline_ratio": round(baseline_ratio, 5),
        "package_s": round(ours_s, 3),
        "package_ratio": round(ours_ratio, 5),
        "package_speedup": round(speedup, 1),
        "baseline_cpu_s": round(baseline_cpu_s, 3),
        "package_cpu_s": round(ours_cpu_s, 3),
        "package_cpu_ratio": round(baseline_cpu_s / ours_cpu_s, 1),
        "package_mib_per_s": round(source_bytes / MIB / ours_s, 1),
        "compression_level": config.compression_level,
        "goal_met": speedup >= GOAL_SPEEDUP and ours_ratio <= baseline_ratio,
        "upload_single_part_s": round(single_s, 3),
        "upload_multipart_s": round(multipart_s, 3),
        "upload_speedup": round(single_s / multipart_s, 2),
        "uploaded_bytes": first.uploaded_bytes,
        "rerun_uploaded_bytes": again.uploaded_bytes,
        "rerun_upload_s": round(rerun_s, 3),
        "s3_endpoint": "moto_server (local)" if endpoint_url is None else endpoint_url,
    }


if __name__ == "__main__":
    main()
