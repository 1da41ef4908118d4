"""Request decoding and response encoding for the media types the container speaks.

In:  application/json, text/csv (one record per row), text/plain (one text).
Out: application/json, text/csv (one row per record).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from serving.errors import BadRequest, NotAcceptable, UnsupportedMediaType

JSON = "application/json"
CSV = "text/csv"
TEXT = "text/plain"
REQUEST_TYPES = (JSON, CSV, TEXT)
RESPONSE_TYPES = (JSON, CSV)


@dataclass(frozen=True)
class Invocation:
    """What the caller asked for: the inputs, whether it sent one input or a batch, and model parameters."""

    inputs: list[Any]
    single: bool
    parameters: dict[str, Any] = field(default_factory=dict)


def media_type(header: str | None) -> tuple[str, str]:
    """`text/csv; charset=latin-1` -> ("text/csv", "latin-1"); the charset defaults to UTF-8."""
    if not header:
        return "", "utf-8"
    kind, _, params = header.partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    return kind.strip().lower(), charset


def negotiate(accept_header: str | None, default: str) -> str:
    """Pick the response type from an Accept header (q-values honoured); `*/*` or none means `default`."""
    if not accept_header or not accept_header.strip():
        return default
    choices: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_header.split(",")):
        kind, _, params = item.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and kind.strip():
            choices.append((-quality, position, kind.strip().lower()))
    for _, _, kind in sorted(choices):
        if kind in ("*/*", f"{default.split('/')[0]}/*"):
            return default
        if kind in RESPONSE_TYPES:
            return kind
        if kind.endswith("/*"):
            for supported in RESPONSE_TYPES:
                if supported.startswith(kind[:-1]):
                    return supported
    raise NotAcceptable(
        f"Accept: {accept_header} names no type this model server writes; "
        f"accept one of {', '.join(RESPONSE_TYPES)}"
    )


def decode(body: bytes, content_type: str | None) -> Any:
    """Body -> plain Python data (the default `input_fn`).

    JSON gives the parsed value; CSV gives {"inputs": [row, ...]} where a one-column row is its text and a
    wider row is its list of cells; plain text gives {"inputs": text}.
    """
    kind, charset = media_type(content_type)
    kind = kind or JSON
    if kind not in REQUEST_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type} is not supported; send one of {', '.join(REQUEST_TYPES)}"
        )
    try:
        text = body.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise BadRequest(f"the body is not valid {charset} text: {exc}") from None
    if kind == JSON:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if kind == CSV:
        return {"inputs": _csv_rows(text)}
    if not text.strip():
        raise BadRequest("the text/plain body is empty; send the text to run the model on")
    return {"inputs": text}


def _csv_rows(text: str) -> list[Any]:
    # strict: without it an unclosed quote swallows every row after it into one field, and a batch's
    # answers no longer line up with its rows.
    reader = csv.reader(io.StringIO(text), strict=True)
    rows: list[list[str]] = []
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise BadRequest(
                    f"the CSV body has an unclosed quote in the record that starts on line {first_line}; "
                    'close the quote, or double it ("") for a quote inside a field'
                ) from None
            raise BadRequest(f"the CSV body is not valid CSV on line {reader.line_num}: {exc}") from None
        if row:
            rows.append(row)
    if not rows:
        raise BadRequest("the CSV body has no rows; send one record per row")
    return [row[0] if len(row) == 1 else row for row in rows]


def to_invocation(data: Any) -> Invocation:
    """Decoded data -> inputs: a single input, a list of inputs, or {"inputs": …, "parameters": {…}}."""
    parameters: dict[str, Any] = {}
    if isinstance(data, dict):
        if "inputs" not in data:
            raise BadRequest(
                'the JSON object has no "inputs" field; send {"inputs": "text"} or {"inputs": ["text", ...]}'
            )
        unknown = sorted(set(data) - {"inputs", "parameters"})
        if unknown:
            raise BadRequest(
                f'unknown field(s) {unknown} in the body; only "inputs" and "parameters" are read'
            )
        raw_parameters = data.get("parameters") or {}
        if not isinstance(raw_parameters, dict):
            raise BadRequest('"parameters" must be a JSON object, e.g. {"parameters": {"top_k": 2}}')
        parameters = raw_parameters
        data = data["inputs"]
    if isinstance(data, list):
        if not data:
            raise BadRequest('"inputs" is an empty list; send at least one input')
        return Invocation(inputs=data, single=False, parameters=parameters)
    if data is None:
        raise BadRequest('"inputs" is null; send a text or a list of texts')
    return Invocation(inputs=[data], single=True, parameters=parameters)


def encode(prediction: Any, kind: str) -> bytes:
    """Plain data (or numpy/torch values) -> body of the negotiated media type (the default `output_fn`)."""
    if kind == JSON:
        # orjson: a tenth of the json module's time on vectors of floats, numpy arrays written natively.
        return orjson.dumps(
            prediction, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        )
    if kind == CSV:
        return _encode_csv(_deep_plain(prediction))
    raise NotAcceptable(f"cannot write {kind}; accept one of {', '.join(RESPONSE_TYPES)}")


def _plain(value: Any) -> Any:
    # numpy arrays/scalars and torch tensors all expose tolist(); that is all JSON needs from them.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot encode a {type(value).__name__} as JSON")


def _deep_plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _deep_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep_plain(item) for item in value]
    return value


def _encode_csv(prediction: Any) -> bytes:
    # One row per record: a list is a list of records, anything else is one record.
    records = prediction if isinstance(prediction, list) else [prediction]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for number, record in enumerate(records, start=1):
        writer.writerow(_cells(record, number))
    return out.getvalue().encode()


def _cells(record: Any, number: int) -> Sequence[Any]:
    """A record as one row: a scalar; a dict's values; a list's items, a dict item giving its values.
    A list held by a dict is spread into cells; anything deeper (a matrix) has no CSV form."""
    if _is_scalar(record):
        return [record]
    cells: list[Any] = []
    if isinstance(record, dict):
        cells = _spread(record)
    elif isinstance(record, list):
        for item in record:
            cells.extend(_spread(item) if isinstance(item, dict) else [item])
    if all(_is_scalar(cell) for cell in cells) and (cells or isinstance(record, (dict, list))):
        return cells
    raise NotAcceptable(
        f"record {number} has no CSV form (it is not one row of values); accept application/json"
    )


def _spread(mapping: dict[Any, Any]) -> list[Any]:
    cells: list[Any] = []
    for value in mapping.values():
        cells.extend(value if isinstance(value, list) else [value])
    return cells


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
