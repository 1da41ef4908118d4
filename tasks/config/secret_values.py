"""Secret values: fetched from their references at the last moment, and kept out of every output.

A release config never holds a secret, only a reference (`{secret: prefect:<block-name>}` for a Prefect
Secret block, `{secret: arn:aws:secretsmanager:...}` for AWS Secrets Manager), so the flow run's
parameters, the ledger and the summary carry the reference alone. The value is fetched inside the step
that hands it on (CreateModel, CreateTransformJob, the image build) and compared with what an endpoint
serves without being written anywhere.

What fetches a value also remembers it for the life of the process, so that what could still echo it is
masked: log records (a record factory, installed with the first value, covers every logger of the
process, Prefect's run loggers included), exceptions leaving a step (`scrubbed`: an AWS validation error
may quote the request), the release's error text and the ledger document. Values shorter than
MIN_MASKED_CHARS are not masked: they cannot be told apart from ordinary text, and are no secret worth
the name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from tasks.config.fields import SecretReference
from tasks.core import aws
from tasks.core.errors import ConfigError, ConfigIssue, ReleaseError

MASK = "***"
MIN_MASKED_CHARS = 4

_known: set[str] = set()
# Longest first, so a secret containing another is masked whole.
_ordered: tuple[str, ...] = ()
_lock = threading.Lock()
_factory_installed = False

T = TypeVar("T")


# --- remembering and masking -------------------------------------------------------------------------


def remember(value: str) -> None:
    """Mask `value` in this process's outputs from now on (logs, errors, ledger, summary)."""
    global _ordered
    if len(value) < MIN_MASKED_CHARS:
        return
    with _lock:
        if value in _known:
            return
        _known.add(value)
        _ordered = tuple(sorted(_known, key=len, reverse=True))
    _install_log_redaction()


def redact(text: str) -> str:
    """`text` with every remembered secret value replaced by MASK."""
    for value in _ordered:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_any(value: T) -> T:
    """Strings inside `value` (nested dicts, lists, tuples, config issues) masked; a new object when
    anything changed, `value` itself otherwise."""
    if not _ordered:
        return value
    result: Any
    if isinstance(value, str):
        result = redact(value)
    elif isinstance(value, dict):
        result = {key: redact_any(item) for key, item in value.items()}
    elif isinstance(value, list):
        result = [redact_any(item) for item in value]
    elif isinstance(value, tuple):
        result = tuple(redact_any(item) for item in value)
    elif isinstance(value, ConfigIssue):
        result = ConfigIssue(redact(value.field), redact(value.problem), redact(value.fix))
    else:
        return value
    return result if result != value else value


def scrub(exc: BaseException) -> BaseException:
    """Mask remembered secret values in `exc` in place: its message and arguments, notes, an AWS error's
    response, a ReleaseError's fields (what it pickles with), and the same for its causes and context.
    Returns `exc`, whose type is unchanged so retry decisions still see what it was."""
    if not _ordered:
        return exc
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.args = redact_any(current.args)
        notes = getattr(current, "__notes__", None)
        if isinstance(notes, list):
            current.__notes__ = redact_any(notes)
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            cleaned = redact_any(response)
            if cleaned is not response:
                response.clear()
                response.update(cleaned)
        if isinstance(current, ReleaseError):
            for key, item in list(current._fields.items()):
                cleaned = redact_any(item)
                current._fields[key] = cleaned
                setattr(current, key, cleaned)
        pending += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            pending += list(current.exceptions)
    return exc


@contextmanager
def scrubbed() -> Iterator[None]:
    """Whatever leaves the block leaves with secret values masked (before Prefect records it as the
    task's state message or logs it)."""
    try:
        yield
    except BaseException as exc:
        scrub(exc)
        raise


def _install_log_redaction() -> None:
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
        previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


def _redact_record(record: logging.LogRecord) -> None:
    if not _ordered:
        return
    try:
        message = record.getMessage()
    except Exception:  # a record whose arguments do not format is logging's own error to report
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        scrub(record.exc_info[1])


# --- fetching ------------------------------------------------------------------------------------------


def resolve(reference: SecretReference, *, field: str) -> str:
    """The value behind `reference` (remembered for masking); ConfigError naming `field` when it cannot
    be read. The error names the reference, never a value."""
    block = reference.prefect_block
    value = _from_prefect(block, field) if block is not None else _from_secrets_manager(reference, field)
    remember(value)
    return value


def resolve_all(
    values: Mapping[str, str | SecretReference], *, field: str, max_chars: int | None = None
) -> dict[str, str]:
    """`values` with each secret reference replaced by its value; `field` is the mapping's dotted name."""
    resolved: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, str):
            resolved[key] = value
            continue
        secret = resolve(value, field=f"{field}.{key}")
        if max_chars is not None and len(secret) > max_chars:
            raise ConfigError(
                f"{field}.{key}",
                f"the secret {value.secret} holds {len(secret)} characters, more than the {max_chars} "
                "SageMaker takes for one environment value",
                f"store a value of at most {max_chars} characters there",
            )
        resolved[key] = secret
    return resolved


def check_available(reference: SecretReference, *, field: str) -> None:
    """Refuse a reference to a secret that does not exist, without reading its value (pre-flight).

    Secrets Manager permissions to describe and to read differ: when describing is denied, the read at
    release time tells."""
    block = reference.prefect_block
    if block is not None:
        _read_prefect_block(block, field, include_secrets=False)
        return
    client = aws.client("secretsmanager", region=reference.region)
    try:
        described = client.describe_secret(SecretId=reference.secret)
    except Exception as exc:
        code = aws.error_code(exc)
        if code == "AccessDeniedException":
            return
        _raise_secrets_manager_error(exc, reference, field)
        raise
    if described.get("DeletedDate") is not None:
        raise ConfigError(
            field,
            f"the secret {reference.secret} is scheduled for deletion",
            "restore it (aws secretsmanager restore-secret) or point the reference at a live secret",
        )


def _from_prefect(block: str, field: str) -> str:
    document = _read_prefect_block(block, field, include_secrets=True)
    value = (document.data or {}).get("value")
    if not isinstance(value, str):
        raise ConfigError(
            field,
            f"the Prefect Secret block {block!r} holds {type(value).__name__}, not text",
            f"save the value as a string: Secret(value='...').save({block!r}, overwrite=True)",
        )
    return value


def _read_prefect_block(block: str, field: str, *, include_secrets: bool) -> Any:
    # Imported here: the Prefect client is needed only by releases that use a Prefect secret.
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_block_document_by_name(
                block, block_type_slug="secret", include_secrets=include_secrets
            )
        except ObjectNotFound:
            raise ConfigError(
                field,
                f"there is no Prefect Secret block named {block!r} in the Prefect API {client.api_url}",
                f"create it (Secret(value='...').save({block!r}) or the UI's Blocks page) in the workspace "
                "the release runs against, or fix the name",
            ) from None


def _from_secrets_manager(reference: SecretReference, field: str) -> str:
    client = aws.client("secretsmanager", region=reference.region)
    try:
        answer = client.get_secret_value(SecretId=reference.secret)
    except Exception as exc:
        _raise_secrets_manager_error(exc, reference, field)
        raise
    value = answer.get("SecretString")
    if not isinstance(value, str):
        raise ConfigError(
            field,
            f"the secret {reference.secret} holds binary data (SecretBinary), not text",
            "store the value as a SecretString (aws secretsmanager put-secret-value --secret-string ...)",
        )
    return value


_SECRETS_MANAGER_FIXES: dict[str, Callable[[str], tuple[str, str]]] = {
    "ResourceNotFoundException": lambda arn: (
        f"Secrets Manager has no secret {arn} (or it has no current value)",
        "create the secret or fix the ARN (aws secretsmanager list-secrets shows the ARNs)",
    ),
    "AccessDeniedException": lambda arn: (
        f"the release may not read the secret {arn}",
        "grant secretsmanager:GetSecretValue on it (and kms:Decrypt on its key) to the role the release "
        "runs as",
    ),
    "DecryptionFailure": lambda arn: (
        f"the secret {arn} cannot be decrypted with its KMS key",
        "grant kms:Decrypt on the secret's key to the role the release runs as",
    ),
    "InvalidRequestException": lambda arn: (
        f"the secret {arn} cannot be read now (deleted or scheduled for deletion)",
        "restore it (aws secretsmanager restore-secret) or point the reference at a live secret",
    ),
}


def _raise_secrets_manager_error(exc: BaseException, reference: SecretReference, field: str) -> None:
    """ConfigError for the refusals a user fixes; returns for anything else (the caller re-raises)."""
    fix = _SECRETS_MANAGER_FIXES.get(aws.error_code(exc) or "")
    if fix is not None:
        problem, how = fix(reference.secret)
        raise ConfigError(field, problem, how) from None
