"""Reading a release configuration: YAML from a file (refusing duplicate keys, alias bombs and files
too large to be a config), overrides of single values, validation into a `ReleaseConfig`, and the
folders a release reads on this machine.

Bad input is refused here, before any resource exists, with a `ConfigError` that names the field and
the fix.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tasks.config.issues import config_issues
from tasks.config.release import ReleaseConfig
from tasks.core.errors import ConfigError, ConfigIssue

# A release config is a page of YAML; a file this large is a wrong path (a model file, a log).
MAX_CONFIG_BYTES = 8 * 2**20
# Nodes that YAML aliases may add beyond those written out: reusing a payload list is fine, a "billion
# laughs" file (aliases of aliases) would expand to more values than validation can walk.
MAX_ALIAS_EXPANSION = 100_000


def parse_config(data: Mapping[str, Any], *, source: str | None = None) -> ReleaseConfig:
    """Validate a mapping into a ReleaseConfig, or raise ConfigError naming each bad field and its fix."""
    try:
        return ReleaseConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.from_issues(config_issues(exc), source=source) from None


def load_config(
    path: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    *,
    path_field: str = "config",
    check_folders: bool = True,
) -> ReleaseConfig:
    """Read a YAML release config; `overrides` ({"endpoint.instance_count": 2}) replace single values.

    `path_field` names the path in errors about the file itself (a CLI passes its flag, --config).
    With `check_folders`, the folders the release reads on this machine (model.local_path, the image's
    build context) must exist: the release would otherwise fail after its bucket and ledger exist.
    """
    file = Path(path)
    text = _read_config_file(file, path_field)
    data = load_yaml(text, field="config", source=str(file))
    if not isinstance(data, dict):
        raise ConfigError(
            "config",
            "the file is not a mapping of sections",
            "start from releases/demo.yaml",
            source=str(file),
        )
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    config = parse_config(data, source=str(file))
    if check_folders:
        check_local_folders(config, source=str(file))
    return config


def _read_config_file(file: Path, field: str) -> str:
    fix = "pass the path of a release YAML file (e.g. releases/demo.yaml)"
    try:
        info = file.stat()
    except FileNotFoundError:
        raise ConfigError(field, f"{file} does not exist", fix) from None
    except NotADirectoryError:
        raise ConfigError(
            field, f"{file} does not exist: a part of its path is a file, not a folder", fix
        ) from None
    except OSError as exc:
        raise ConfigError(field, f"{file} cannot be read: {exc.strerror or exc}", fix) from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(field, f"{file} is a folder, not a file", fix)
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(field, f"{file} is not a regular file", fix)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except PermissionError:
        raise ConfigError(
            field,
            f"{file} cannot be read: permission denied",
            "make the file readable by the user running the release (chmod a+r), or pass a readable copy",
        ) from None
    except OSError as exc:
        raise ConfigError(field, f"{file} cannot be read: {exc.strerror or exc}", fix) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            field,
            f"{file} is larger than {MAX_CONFIG_BYTES // 2**20} MiB, far more than a release config",
            fix,
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            field,
            f"{file} is not UTF-8 text (byte {raw[exc.start]:#04x} on line {line})",
            "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 OLD > NEW)",
        ) from None


def load_yaml(text: str, *, field: str, source: str | None = None) -> Any:
    """Parse one YAML document safely: duplicate keys, self-referencing aliases and aliases that expand
    beyond MAX_ALIAS_EXPANSION nodes are refused as ConfigError naming `field` (or the key below it)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, field, source)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None and source else ""
        raise ConfigError(
            field,
            f"YAML syntax error{where}: {getattr(exc, 'problem', None) or exc}",
            "fix the YAML syntax" if source else "quote the value or close its brackets",
            source=source,
        ) from None
    except RecursionError:
        raise ConfigError(
            field,
            "the YAML nests too deeply to read",
            "flatten the nesting (a release config needs a few levels)",
            source=source,
        ) from None
    finally:
        loader.dispose()


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _children(node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.SequenceNode):
        return [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[yaml.Node, str]] = []
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            out += [(key, path), (value, f"{path}.{name}" if path else str(name))]
        return out
    return []


def _check_nodes(root: yaml.Node, field: str, source: str | None) -> None:
    """Walk the composed node graph once (shared nodes are aliases): refuse duplicate keys, cycles and
    an alias expansion beyond MAX_ALIAS_EXPANSION. A loop, not recursion: aliases of aliases can chain
    deeper than Python's recursion limit in a flat file."""
    base = "" if field == "config" else field
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str, bool]] = [(root, base, False)]
    while stack:
        node, path, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(child)] for child, _ in _children(node, path))
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise ConfigError(
                path or field,
                f"an alias refers to a collection that contains it (line {node.start_mark.line + 1})",
                "write the value out instead of an alias to its own anchor",
                source=source,
            )
        if isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(node, path, source)
        open_nodes.add(key)
        stack.append((node, path, True))
        stack.extend((child, child_path, False) for child, child_path in _children(node, path))
    extra = size[id(root)] - len(size)
    if extra > MAX_ALIAS_EXPANSION:
        raise ConfigError(
            field,
            f"YAML aliases expand {len(size)} written values into {size[id(root)]}, more than "
            f"{MAX_ALIAS_EXPANSION} added values",
            "write the values out, or reuse fewer and smaller anchors",
            source=source,
        )


def _refuse_duplicate_keys(node: yaml.MappingNode, path: str, source: str | None) -> None:
    seen: dict[tuple[str, str], int] = {}
    for key, _ in node.value:
        # A merge key (<<) brings in values that the mapping's own keys may override: not a duplicate.
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        ident, line = (key.tag, key.value), key.start_mark.line + 1
        if ident in seen:
            raise ConfigError(
                f"{path}.{key.value}" if path else str(key.value),
                f"is given twice (lines {seen[ident]} and {line}); YAML would silently keep the last",
                "keep one of them",
                source=source,
            )
        seen[ident] = line


_OVERRIDE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def parse_override(text: str) -> tuple[str, Any]:
    """("endpoint.instance_count", 2) from the command line's `endpoint.instance_count=2`: the value is
    YAML, read as safely as a config file."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            "--set",
            f"{text!r} is not KEY=VALUE",
            "write it as --set section.field=value (e.g. --set endpoint.instance_count=2)",
        )
    if not _OVERRIDE_KEY.match(key):
        raise ConfigError(
            "--set",
            f"{key!r} is not a dotted field name",
            "name the field by its sections joined with '.' (e.g. endpoint.instance_count); a list is "
            "set whole (e.g. smoke.expect_shape=[1,384])",
        )
    return key, load_yaml(raw, field=key)


CONFIG_SUFFIXES = (".yaml", ".yml")


def config_files(folder: Path) -> list[Path]:
    """The release configs of `folder`: its .yaml and .yml files (not folders), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.suffix in CONFIG_SUFFIXES and p.is_file())


def check_local_folders(config: ReleaseConfig, *, source: str | None = None) -> None:
    """Refuse folders the release reads on this machine that are not there: the model folder, and the
    build context (with its Dockerfile) of a built image."""
    issues: list[ConfigIssue] = []
    local = config.model.local_path
    if local is not None:
        folder = Path(local).expanduser()
        if not folder.is_dir():
            what = "is a file, not a folder" if folder.exists() else "does not exist"
            issues.append(
                ConfigIssue(
                    "model.local_path",
                    f"{local} {what} (relative paths start at {Path.cwd()})",
                    "point model.local_path at the folder holding the model files",
                )
            )
    image = config.image
    if image.source == "build":
        context = Path(image.context).expanduser()
        if not context.is_dir():
            issues.append(
                ConfigIssue(
                    "image.context",
                    f"{image.context} is not a folder (relative paths start at {Path.cwd()})",
                    "point image.context at the serving image's build context (e.g. container), "
                    "or use image.source: prebuilt",
                )
            )
        elif not (context / image.dockerfile).is_file():
            issues.append(
                ConfigIssue(
                    "image.dockerfile",
                    f"{image.dockerfile} is not a file in {image.context}",
                    "name the Dockerfile inside image.context (default Dockerfile)",
                )
            )
    if issues:
        raise ConfigError.from_issues(issues, source=source)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            section = ".".join(parts[: depth + 1])
            raise ConfigError(
                dotted,
                f"{section} is not a section, so it has no field {parts[depth + 1]}",
                f"override {section} itself, or a field inside a section",
            )
        node = child
    node[parts[-1]] = value
