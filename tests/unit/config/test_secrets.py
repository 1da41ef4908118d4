"""Secrets: a config holds references only; values are fetched at release time (moto's Secrets Manager, a
Prefect Secret block in a test API) and never reach an error, a log, the ledger or the summary; secret
build args are BuildKit secrets, not build args; registry and Hub tokens go only to their own hosts."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import uvicorn
from botocore.exceptions import ClientError
from fastapi import Request, Response
from prefect.blocks.system import Secret
from prefect.testing.utilities import prefect_test_harness

from emulator.hub import publish
from emulator.hub.app import create_app
from flows import release as release_flow
from tasks.artifact import model_source
from tasks.checks.preflight import check_secrets
from tasks.config import ModelSourceConfig, SecretReference, parse_override, secret_values
from tasks.core import aws
from tasks.core.errors import ConfigError
from tasks.image import build, ecr, registry, release_image
from tasks.lifecycle.ledger import Ledger, LocalLedgerStore
from tasks.report.summary import ReleaseReport
from tasks.sagemaker import deploy
from tasks.sagemaker.hosting import LiveEndpoint, ModelData, ServedModel
from tests.unit.deploy_helpers import make_config

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serving:abc"
MODEL_DATA = ModelData("s3://models-bucket/sr/model.tar.gz")


def canary() -> str:
    """A value found nowhere unless something leaked it."""
    return f"canary-{uuid.uuid4().hex}"


def _refused(**sections: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        make_config(**sections)
    return caught.value


@pytest.fixture(autouse=True, scope="module")
def _forget_remembered_values() -> Iterator[None]:
    """Remembered values are masked for the life of the process: without this, a value fetched here
    (such as "12345") would mask the account id in whatever test module runs next."""
    known, ordered = set(secret_values._known), secret_values._ordered
    yield
    with secret_values._lock:
        secret_values._known.clear()
        secret_values._known.update(known)
        secret_values._ordered = ordered


# --- the config holds references only --------------------------------------------------------------------


def test_environment_values_may_be_secret_references_and_the_parameters_keep_only_those() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
    config = make_config(
        endpoint={
            "environment": {"MODE": "fast", "API_KEY": {"secret": "prefect:api-key"}, "DB": {"secret": arn}}
        }
    )
    environment = config.endpoint.environment
    assert environment["MODE"] == "fast"
    assert environment["API_KEY"] == SecretReference(secret="prefect:api-key")
    assert isinstance(environment["DB"], SecretReference) and environment["DB"].region == "us-east-1"
    # What Prefect stores as the flow run's parameters, and validates again on the worker.
    dumped = config.model_dump(mode="json")
    assert dumped["endpoint"]["environment"]["API_KEY"] == {"secret": "prefect:api-key"}
    assert make_config(endpoint=dumped["endpoint"]).endpoint.environment == environment


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        (67890, "is a number, not text"),
        (True, "is a boolean, not text"),
        (["x"], "is a list, not text"),
        ({"secret": "SECRET"}, "is not a secret reference"),
        ({"SECRET": None}, "not a secret reference"),
        ({"secret": "prefect:Not_A_Block_SECRET"}, "names no valid Prefect block"),
    ],
)
def test_config_errors_on_environment_values_name_the_field_but_never_echo_the_value(
    given: Any, problem: str
) -> None:
    value = canary()

    def plant(item: Any) -> Any:
        if isinstance(item, str):
            return item.replace("SECRET", value)
        if isinstance(item, dict):
            return {plant(k): plant(v) for k, v in item.items()}
        return item

    planted = plant(given)
    for section, field in (("endpoint", "environment"), ("image", "build_args")):
        error = _refused(**{section: {field: {"API_KEY": planted}}})
        assert error.field == f"{section}.{field}.API_KEY"
        assert problem in error.problem and "prefect:" in error.fix
        assert value not in str(error) and "67890" not in str(error)


def test_a_whole_environment_given_as_text_is_refused_without_quoting_it() -> None:
    value = canary()
    error = _refused(endpoint={"environment": f"API_KEY={value}"})
    assert error.field == "endpoint.environment" and "not a mapping" in error.problem
    assert value not in str(error)


def test_a_literal_value_set_twice_on_the_command_line_is_not_echoed() -> None:
    first, second = canary(), canary()
    with pytest.raises(ConfigError) as caught:
        release_flow._overrides(
            [f"endpoint.environment.API_KEY={first}", f"endpoint.environment.API_KEY={second}"]
        )
    assert "set twice" in caught.value.problem
    assert first not in str(caught.value) and second not in str(caught.value)
    with pytest.raises(ConfigError, match=r"\(1, then 2\)"):
        release_flow._overrides(["smoke.content_type=1", "smoke.content_type=2"])
    assert parse_override("endpoint.environment.K={secret: prefect:k}")[1] == {"secret": "prefect:k"}


# --- AWS Secrets Manager (moto) ---------------------------------------------------------------------------


def test_a_secrets_manager_reference_resolves_to_its_secret_string(mocked_aws: None) -> None:
    value = canary()
    arn = boto3.client("secretsmanager").create_secret(Name="api", SecretString=value)["ARN"]
    resolved = secret_values.resolve_all(
        {"MODE": "fast", "API_KEY": SecretReference(secret=arn)}, field="endpoint.environment"
    )
    assert resolved == {"MODE": "fast", "API_KEY": value}
    assert secret_values.redact(f"token={value};") == "token=***;"


def test_unreadable_secrets_manager_references_are_config_errors_naming_field_and_fix(
    mocked_aws: None,
) -> None:
    sm = boto3.client("secretsmanager")
    missing = SecretReference(secret="arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf")
    with pytest.raises(ConfigError) as caught:
        secret_values.resolve(missing, field="endpoint.environment.API_KEY")
    assert caught.value.field == "endpoint.environment.API_KEY"
    assert "has no secret" in caught.value.problem and "create the secret" in caught.value.fix

    binary = SecretReference(secret=sm.create_secret(Name="bin", SecretBinary=b"\x00\x01")["ARN"])
    with pytest.raises(ConfigError, match="SecretBinary"):
        secret_values.resolve(binary, field="endpoint.environment.B")

    value = "x" * 1025 + canary()
    long = SecretReference(secret=sm.create_secret(Name="long", SecretString=value)["ARN"])
    with pytest.raises(ConfigError) as caught:
        secret_values.resolve_all({"L": long}, field="endpoint.environment", max_chars=1024)
    assert "more than the 1024" in caught.value.problem and value not in str(caught.value)


def test_preflight_refuses_a_missing_secret_without_reading_any_value(
    mocked_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sm = boto3.client("secretsmanager")
    present = sm.create_secret(Name="present", SecretString=canary())["ARN"]
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    read: list[str] = []
    client = aws.client("secretsmanager", region="us-east-1")
    client.meta.events.register("before-call.secretsmanager.GetSecretValue", lambda **kw: read.append("read"))

    check_secrets(make_config(endpoint={"environment": {"A": {"secret": present}}}))
    with pytest.raises(ConfigError) as caught:
        check_secrets(
            make_config(endpoint={"environment": {"A": {"secret": present}, "B": {"secret": missing}}})
        )
    assert caught.value.field == "endpoint.environment.B" and "has no secret" in caught.value.problem
    assert read == []


# --- the model, the comparison with what serves, the errors ------------------------------------------------


def _ledger(tmp_path: Path) -> Ledger:
    return Ledger.open(LocalLedgerStore(tmp_path / "ledger.json"), "r1")


def test_create_model_hands_sagemaker_the_value_and_keeps_it_out_of_the_ledger(
    mocked_aws: None, tmp_path: Path
) -> None:
    value = canary()
    arn = boto3.client("secretsmanager").create_secret(Name="api", SecretString=value)["ARN"]
    config = make_config(endpoint={"environment": {"API_KEY": {"secret": arn}}})
    ledger = _ledger(tmp_path)
    name = deploy.create_model.fn(config, "r1", image_uri=IMAGE, model_data=MODEL_DATA, ledger=ledger)
    described = boto3.client("sagemaker").describe_model(ModelName=name)
    assert described["PrimaryContainer"]["Environment"]["API_KEY"] == value
    assert value not in (tmp_path / "ledger.json").read_text()


def test_a_create_model_refusal_that_quotes_the_request_leaves_with_the_value_masked(
    mocked_aws: None, tmp_path: Path
) -> None:
    value = canary()
    arn = boto3.client("secretsmanager").create_secret(Name="api", SecretString=value)["ARN"]
    config = make_config(endpoint={"environment": {"API_KEY": {"secret": arn}}})

    def refuse(params: dict[str, Any], **_: Any) -> None:
        # What AWS answers to a bad request: the offending value quoted in the message.
        environment = params["PrimaryContainer"]["Environment"]
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": f"Value '{environment}' failed"}},
            "CreateModel",
        )

    aws.client("sagemaker").meta.events.register("before-parameter-build.sagemaker.CreateModel", refuse)
    ledger = _ledger(tmp_path)
    with pytest.raises(ClientError) as caught:
        deploy.create_model.fn(config, "r1", image_uri=IMAGE, model_data=MODEL_DATA, ledger=ledger)
    assert "***" in str(caught.value) and value not in str(caught.value)
    assert value not in json.dumps(caught.value.response)
    assert aws.error_code(caught.value) == "ValidationException"  # still the error it was, for retries
    assert value not in (tmp_path / "ledger.json").read_text()


def test_unchanged_compares_with_the_resolved_value_and_a_rotated_secret_redeploys(mocked_aws: None) -> None:
    value = canary()
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(Name="api", SecretString=value)["ARN"]
    config = make_config(endpoint={"environment": {"API_KEY": {"secret": arn}}})

    def live(served: str) -> LiveEndpoint:
        model = ServedModel(
            "AllTraffic",
            "m",
            IMAGE,
            MODEL_DATA,
            {"API_KEY": served, "HF_TASK": "feature-extraction"},
            config.endpoint.instance_type,
            1,
            None,
        )
        return LiveEndpoint("demo-embedder", "InService", "c", None, (model,))

    assert deploy.serves_release(live(value), config, image_uri=IMAGE, model_data=MODEL_DATA)
    sm.put_secret_value(SecretId=arn, SecretString=canary())
    assert not deploy.serves_release(live(value), config, image_uri=IMAGE, model_data=MODEL_DATA)


def test_logs_errors_ledger_and_summary_mask_a_resolved_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    value = canary()
    secret_values.remember(value)
    with caplog.at_level(logging.INFO, logger="sagemaker_release.test"):
        try:
            raise RuntimeError(f"boom {value}")
        except RuntimeError as exc:
            logging.getLogger("sagemaker_release.test").error("saw %s", value, exc_info=exc)
    assert caplog.records and value not in caplog.text and "saw ***" in caplog.text

    ledger = _ledger(tmp_path)
    entry = ledger.intend("sagemaker:model", "m")
    ledger.disown(entry, f"refused: {value}")
    assert value not in (tmp_path / "ledger.json").read_text()

    report = ReleaseReport("r1", "demo", "realtime")
    report.error = f"ClientError: {value}"
    assert value not in json.dumps(report.summary()) and value not in report.markdown()

    short = "abc"
    secret_values.remember(short)  # too short to mask without mangling ordinary text
    assert secret_values.redact("abcdef") == "abcdef"


# --- Prefect Secret blocks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_a_prefect_secret_block_resolves_and_is_checked_without_its_value(prefect_api: None) -> None:
    value = canary()
    Secret(value=value).save("api-key", overwrite=True)
    reference = SecretReference(secret="prefect:api-key")
    secret_values.check_available(reference, field="endpoint.environment.API_KEY")
    assert secret_values.resolve(reference, field="endpoint.environment.API_KEY") == value
    # A value that reads as JSON stays the text it is.
    Secret(value="12345").save("numeric", overwrite=True)
    assert secret_values.resolve(SecretReference(secret="prefect:numeric"), field="f") == "12345"


def test_missing_or_structured_prefect_secrets_are_refused(prefect_api: None) -> None:
    missing = SecretReference(secret="prefect:no-such-block")
    for check in (secret_values.check_available, secret_values.resolve):
        with pytest.raises(ConfigError) as caught:
            check(missing, field="endpoint.environment.API_KEY")
        assert caught.value.field == "endpoint.environment.API_KEY"
        assert "no Prefect Secret block named 'no-such-block'" in caught.value.problem
    Secret(value={"user": "u", "password": canary()}).save("structured", overwrite=True)
    with pytest.raises(ConfigError, match="holds dict, not text"):
        secret_values.resolve(SecretReference(secret="prefect:structured"), field="f")


# --- secret build args: BuildKit secrets through the docker CLI ------------------------------------------


def _fake_docker(tmp_path: Path, *, buildx: bool, version: str = "28.2.2") -> Path:
    """A docker CLI stand-in that records its arguments and what its secret variable held."""
    script = tmp_path / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "Docker version {version}, build x"; exit 0; fi\n'
        f'if [ "$1 $2" = "buildx version" ]; then exit {0 if buildx else 1}; fi\n'
        f'printf "%s\\n" "$@" > "{tmp_path}/argv"\n'
        f'printf "%s" "$SAGEMAKER_RELEASE_BUILD_SECRET_0" > "{tmp_path}/handed-over"\n'
        'echo "#7 RUN echo $SAGEMAKER_RELEASE_BUILD_SECRET_0"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


class _ClassicStoreEngine:
    """A Docker SDK client of an engine with the classic image store: `docker info` is all it answers."""

    def info(self) -> dict[str, Any]:
        return {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}


def test_a_secret_build_arg_is_a_buildkit_secret_in_the_environment_never_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    value = canary()
    secret_values.remember(value)
    monkeypatch.setenv(build.DOCKER_CLI_ENV, str(_fake_docker(tmp_path, buildx=True)))
    with caplog.at_level(logging.INFO):
        build.docker_build(
            client=_ClassicStoreEngine(),  # asked only for its image store; the CLI builds
            context=tmp_path,
            base_image="base:1",
            ref="serving:t",
            timeout_s=60,
            build_args={"PLAIN": "p"},
            secrets={"PIP_TOKEN": value},
        )
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[:3] == ["buildx", "build", "--load"]
    assert "id=PIP_TOKEN,env=SAGEMAKER_RELEASE_BUILD_SECRET_0" in argv and "PLAIN=p" in argv
    assert value not in "\n".join(argv)
    assert (tmp_path / "handed-over").read_text() == value
    assert "RUN echo ***" in caplog.text and value not in caplog.text


def test_a_secret_build_arg_hashes_its_reference_not_its_value(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    one = SecretReference(secret="prefect:token")
    tag = build.context_tag(tmp_path, "base:1", build_args={"T": one})
    assert tag == build.context_tag(
        tmp_path, "base:1", build_args={"T": SecretReference(secret="prefect:token")}
    )
    assert tag != build.context_tag(
        tmp_path, "base:1", build_args={"T": SecretReference(secret="prefect:other")}
    )


def test_secret_build_args_without_a_buildkit_cli_are_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(build.DOCKER_CLI_ENV, str(_fake_docker(tmp_path, buildx=False, version="28.2.2")))
    config = make_config(image={"build_args": {"PIP_TOKEN": {"secret": "prefect:pip-token"}}})
    monkeypatch.setattr(secret_values, "check_available", lambda reference, *, field: None)
    with pytest.raises(ConfigError) as caught:
        check_secrets(config)
    assert caught.value.field == "image.build_args" and "docker-buildx" in caught.value.fix
    # A pre-23 docker CLI builds with BuildKit by itself.
    monkeypatch.setenv(build.DOCKER_CLI_ENV, str(_fake_docker(tmp_path, buildx=False, version="20.10.24")))
    check_secrets(config)
    assert build.buildkit_command() == ([str(tmp_path / "docker"), "build"], {"DOCKER_BUILDKIT": "1"})


# --- registry credentials go to their own host ----------------------------------------------------------


class _Engine:
    """The docker SDK's surface build_and_push uses, recording the credentials each call got."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.auth: list[tuple[str, Any]] = []
        self.images = self
        self.api = self

    def get(self, ref: str) -> object:  # the image is built already
        return object()

    def tag(self, *args: Any) -> None:
        pass

    def remove_image(self, *args: Any, **kwargs: Any) -> None:
        pass

    def push(self, repo: str, *, auth_config: Any, **_: Any) -> Iterator[dict[str, Any]]:
        self.auth.append((f"push {repo.split('/')[0]}", auth_config))
        yield {"aux": {"Digest": self.digest}}

    def get_registry_data(self, ref: str, *, auth_config: Any) -> Any:
        self.auth.append((f"inspect {ref.split('/')[0]}", auth_config))
        return type("Data", (), {"id": self.digest})()


def _build_and_push(tmp_path: Path, engine: _Engine) -> None:
    context = tmp_path / "ctx"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\n")
    release_image.build_and_push(
        context=context,
        base_image="b:1",
        repository_name="serving",
        tags=[],
        ledger=_ledger(tmp_path),
        client=engine,
    )


def test_ecr_credentials_go_to_ecr_and_a_separate_registry_gets_only_its_own(
    mocked_aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": registry.MANIFEST_MEDIA_TYPES[0], "layers": []}
    ).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    sent: list[Any] = []

    def fetch(host: str, repository: str, tag: str, auth: Any) -> tuple[bytes, str]:
        sent.append((host, auth))
        return manifest, registry.MANIFEST_MEDIA_TYPES[0]

    monkeypatch.setattr(registry, "fetch_manifest", fetch)
    # The engine's own login for the separate registry (docker login writes this file).
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    own = base64.b64encode(b"mirror-user:mirror-pass").decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {"mirror.example:5000": {"auth": own}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    ecr_password = registry.registry_auth().password

    monkeypatch.setenv(registry.REGISTRY_ENV, "mirror.example:5000")
    engine = _Engine(digest)
    _build_and_push(tmp_path / "one", engine)
    given = [*engine.auth, *sent]
    assert given and ecr_password not in json.dumps(given, default=str)
    assert engine.auth == [
        ("push mirror.example:5000", {"username": "mirror-user", "password": "mirror-pass"})
    ] * 1 + [("inspect mirror.example:5000", {"username": "mirror-user", "password": "mirror-pass"})]

    # No login for that host: nothing is sent rather than another registry's token.
    (config_dir / "config.json").write_text("{}")
    boto3.client("ecr").batch_delete_image(repositoryName="serving", imageIds=[{"imageDigest": digest}])
    engine = _Engine(digest)
    _build_and_push(tmp_path / "two", engine)
    assert [auth for _, auth in engine.auth] == [None, None]

    # Pushing to ECR itself: ECR's token, to ECR's host.
    monkeypatch.delenv(registry.REGISTRY_ENV)
    boto3.client("ecr").batch_delete_image(repositoryName="serving", imageIds=[{"imageDigest": digest}])
    monkeypatch.setattr(ecr, "image_digest_in_ecr", _digest_after_push(digest))
    engine = _Engine(digest)
    _build_and_push(tmp_path / "three", engine)
    ecr_host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert [(what, auth["password"]) for what, auth in engine.auth] == [
        (f"push {ecr_host}", ecr_password),
        (f"inspect {ecr_host}", ecr_password),
    ]


def _digest_after_push(digest: str) -> Any:
    """ECR as a push to it would leave it (the stand-in engine pushes nowhere): absent, then present."""
    calls = {"n": 0}

    def lookup(repository: str, tag: str) -> str | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else digest

    return lookup


# --- the Hub token goes to HF_ENDPOINT's host only ---------------------------------------------------------

HUB_TOKEN = "hf_read_token_for_the_local_hub"
REPO = "team/private-model"
WEIGHTS = b"w" * 4096


class _Elsewhere(BaseHTTPRequestHandler):
    """Another host the Hub redirects a file to; it remembers the Authorization headers it was sent."""

    seen: list[str | None] = []
    hub_headers: dict[str, str] = {}  # what the Hub said of the file, as a Hub host answers too

    def do_HEAD(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        for name, value in type(self).hub_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(WEIGHTS)))
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()
        self.wfile.write(WEIGHTS)

    def log_message(self, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redirecting_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The local hub with a private repo whose weights it redirects to another host, as the Hub sends
    LFS files to a CDN; that host is made a "Hub origin", to which huggingface_hub keeps the token."""
    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)
    _Elsewhere.seen = []
    other = f"http://127.0.0.1:{elsewhere.server_address[1]}"
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()

    files = tmp_path / "files"
    files.mkdir()
    (files / "config.json").write_text("{}")
    (files / "model.safetensors").write_bytes(WEIGHTS)
    publish(tmp_path / "hub", REPO, files, private=True, read_tokens=[HUB_TOKEN])
    app = create_app(tmp_path / "hub")
    hub_seen: list[str | None] = []

    @app.middleware("http")
    async def to_elsewhere(request: Request, call_next: Any) -> Response:
        hub_seen.append(request.headers.get("authorization"))
        response: Response = await call_next(request)
        if request.url.path.endswith("/model.safetensors") and response.status_code == 200:
            kept = {k: v for k, v in response.headers.items() if k.lower().startswith(("x-", "etag"))}
            _Elsewhere.hub_headers = kept
            return Response(status_code=302, headers={**kept, "Location": f"{other}/blob/model.safetensors"})
        return response

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the in-process hub did not start within 10 s"
        time.sleep(0.02)
    from huggingface_hub.utils import _http

    monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(other)})
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    try:
        yield other
        assert f"Bearer {HUB_TOKEN}" in hub_seen  # the Hub itself got the token
    finally:
        server.should_exit = True
        elsewhere.shutdown()


def test_the_hub_token_is_not_sent_to_a_host_the_hub_redirects_to(
    redirecting_hub: str, tmp_path: Path
) -> None:
    snapshot = model_source.fetch_snapshot(ModelSourceConfig(repo_id=REPO), tmp_path / "cache")
    assert (Path(snapshot.path) / "model.safetensors").read_bytes() == WEIGHTS
    assert _Elsewhere.seen and set(_Elsewhere.seen) == {None}


def test_the_token_is_allowed_only_for_the_hub_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:4588")
    assert model_source.token_allowed("http://127.0.0.1:4588/api/models/a/b")
    assert model_source.token_allowed("https://127.0.0.1/api/models/a/b")  # an upgrade of the same host
    assert not model_source.token_allowed("http://127.0.0.1:9999/blob")
    assert not model_source.token_allowed("https://huggingface.co/a/b/resolve/main/x")
    monkeypatch.delenv("HF_ENDPOINT")
    assert model_source.token_allowed("https://huggingface.co/api/models/a/b")
    assert not model_source.token_allowed("https://cdn-lfs.huggingface.co/x")
