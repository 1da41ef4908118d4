"""Sentence embeddings for a sentence-transformers folder: transformer -> pooling -> dense/normalize.

The steps come from modules.json, so the output equals `SentenceTransformer(folder).encode(texts)`. The
transformers feature-extraction pipeline is not used: batched, it returns padded token rows without the
attention mask that pooling needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from serving.device import Placement
from serving.errors import BadRequest, ModelLoadError
from serving.predictors.base import require_known_parameters, require_texts
from serving.predictors.hf_files import load_model, load_tokenizer, read_json
from serving.predictors.length_buckets import run_bucketed
from serving.predictors.packed_sequences import PackedEncoder, pad_rows
from serving.predictors.pooling import PoolingConfig, pool

MARKER_FILES = ("modules.json", "sentence_bert_config.json")
_PARAMETERS = {"prompt", "prompt_name"}
# A tokenizer without a real limit reports this sentinel (int(1e30)); fall back to the position table.
_NO_LIMIT = 1_000_000


def is_sentence_transformers(folder: Path) -> bool:
    return any((folder / name).is_file() for name in MARKER_FILES)


@dataclass
class Layout:
    """What modules.json and the module configs say about how to embed a sentence."""

    transformer_dir: Path
    pooling: PoolingConfig
    max_seq_length: int | None = None
    do_lower_case: bool = False
    after_pooling: list[nn.Module] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


def read_layout(folder: Path) -> Layout:
    if not (folder / "modules.json").is_file():
        # An old layout: one transformer in the root, mean pooling.
        return _with_root_settings(
            folder, Layout(transformer_dir=folder, pooling=PoolingConfig(modes=("mean",)))
        )
    modules = read_json(folder / "modules.json")
    transformer_dir: Path | None = None
    pooling: PoolingConfig | None = None
    after: list[nn.Module] = []
    for module in sorted(modules, key=lambda item: item.get("idx", 0)):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = folder / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = path
        elif kind == "Pooling":
            pooling = PoolingConfig.from_dict(read_json(path / "config.json"), str(path / "config.json"))
        elif kind == "Dense" and pooling is not None:
            after.append(_load_dense(path))
        elif kind == "Normalize" and pooling is not None:
            after.append(_Normalize())
        else:
            raise ModelLoadError(
                f"modules.json lists a {module.get('type')} module at {path}, which this container does not "
                "run (it runs Transformer -> Pooling -> Dense/Normalize); serve it with a code/inference.py"
            )
    if transformer_dir is None or pooling is None:
        raise ModelLoadError(
            f"{folder / 'modules.json'} needs a Transformer and a Pooling module to embed sentences"
        )
    layout = Layout(transformer_dir=transformer_dir, pooling=pooling, after_pooling=after)
    return _with_root_settings(folder, layout)


def _with_root_settings(folder: Path, layout: Layout) -> Layout:
    st_config = layout.transformer_dir / "sentence_bert_config.json"
    if st_config.is_file():
        raw = read_json(st_config)
        layout.max_seq_length = raw.get("max_seq_length")
        layout.do_lower_case = bool(raw.get("do_lower_case", False))
    model_config = folder / "config_sentence_transformers.json"
    if model_config.is_file():
        raw = read_json(model_config)
        layout.prompts = {str(k): str(v) for k, v in (raw.get("prompts") or {}).items()}
        layout.default_prompt_name = raw.get("default_prompt_name") or None
    return layout


class _Normalize(nn.Module):
    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(embeddings, p=2, dim=-1)


class _Dense(nn.Module):
    def __init__(self, config: Mapping[str, Any], activation: nn.Module) -> None:
        super().__init__()
        in_features, out_features = int(config["in_features"]), int(config["out_features"])
        self.linear = nn.Linear(in_features, out_features, bias=bool(config.get("bias", True)))
        self.activation = activation
        self.residual: nn.Module | None = None
        if config.get("use_residual"):
            same = in_features == out_features
            self.residual = nn.Identity() if same else nn.Linear(in_features, out_features, bias=False)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.linear(embeddings))
        return out if self.residual is None else out + self.residual(embeddings)


def _load_dense(path: Path) -> nn.Module:
    config = read_json(path / "config.json")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") != "sentence_embedding":
            raise ModelLoadError(f"{path}/config.json: a Dense module on {config[key]} is not supported")
    dense = _Dense(config, _activation(config.get("activation_function"), path))
    weights = _dense_weights(path)
    try:
        dense.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelLoadError(f"the weights in {path} do not fit its config.json: {exc}") from None
    return dense


def _activation(name: str | None, path: Path) -> nn.Module:
    if name is None:
        return nn.Tanh()
    module_name, _, class_name = name.rpartition(".")
    # Like sentence-transformers without trust_remote_code: only torch's own layers are instantiated.
    if not module_name.startswith("torch."):
        raise ModelLoadError(f"{path}/config.json: activation {name} is not a torch.nn layer")
    activation = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
        raise ModelLoadError(f"{path}/config.json: activation {name} is not a torch.nn layer")
    return activation()


def _dense_weights(path: Path) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(path / "model.safetensors"))
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ModelLoadError(f"{path} has neither model.safetensors nor pytorch_model.bin for its Dense layer")


class SentenceEmbedder:
    """feature-extraction for sentence-transformers folders: one pooled vector per text."""

    task = "feature-extraction"

    def __init__(self, folder: Path, placement: Placement, pack_sequences: bool = True) -> None:
        from transformers import AutoModel

        self.layout = read_layout(folder)
        self.device = placement.device
        self.tokenizer = load_tokenizer(self.layout.transformer_dir)
        self.model = load_model(AutoModel, self.layout.transformer_dir, placement)
        # Dense/Normalize run in float32 whatever the transformer's precision, as their weights are saved.
        self.after_pooling = nn.Sequential(*self.layout.after_pooling).to(placement.device).eval()
        self.max_length = self._max_length()
        self._prompt_lengths: dict[str, int] = {}
        self.packed = (
            PackedEncoder.try_enable(self.model, self.tokenizer, self.max_length, self.device)
            if pack_sequences
            else None
        )

    def _max_length(self) -> int | None:
        if self.layout.max_seq_length:
            return int(self.layout.max_seq_length)
        limit = int(getattr(self.tokenizer, "model_max_length", _NO_LIMIT) or _NO_LIMIT)
        if limit < _NO_LIMIT:
            return limit
        positions = getattr(self.model.config, "max_position_embeddings", None)
        return int(positions) if positions else None

    def check(self, inputs: list[Any], parameters: Mapping[str, Any]) -> None:
        require_texts(inputs, self.task)
        require_known_parameters(parameters, _PARAMETERS, self.task)
        self._prompt(parameters)

    def _prompt(self, parameters: Mapping[str, Any]) -> str | None:
        if "prompt" in parameters:
            if not isinstance(parameters["prompt"], str):
                raise BadRequest("parameters.prompt must be a string")
            return str(parameters["prompt"])
        name = parameters.get("prompt_name", self.layout.default_prompt_name)
        if name is None:
            return None
        if name not in self.layout.prompts:
            raise BadRequest(
                f"parameters.prompt_name={name!r} is not one of the model's prompts "
                f"{sorted(self.layout.prompts)}"
            )
        return self.layout.prompts[name] or None

    def predict(self, inputs: list[Any], parameters: Mapping[str, Any]) -> list[Any]:
        texts = [str(text) for text in inputs]
        prompt = self._prompt(parameters)
        if prompt:
            texts = [prompt + text for text in texts]
        if self.layout.do_lower_case:
            texts = [text.lower() for text in texts]
        prompt_length = self._prompt_length(prompt) if prompt else None
        if self.packed is not None:
            token_embeddings, mask = pad_rows(self.packed.token_rows(texts))
            return self._sentence_embeddings(token_embeddings, mask, prompt_length)

        def forward(batch: Any) -> list[Any]:
            with torch.inference_mode():
                token_embeddings = self.model(**batch).last_hidden_state
            return self._sentence_embeddings(token_embeddings, batch["attention_mask"], prompt_length)

        return run_bucketed(self.tokenizer, texts, self.max_length, self.device, forward)

    def _sentence_embeddings(
        self, token_embeddings: torch.Tensor, mask: torch.Tensor, prompt_length: int | None
    ) -> list[Any]:
        with torch.inference_mode():
            pooled = pool(token_embeddings, mask, self.layout.pooling, prompt_length)
            return list(self.after_pooling(pooled.float()).cpu().tolist())

    def _prompt_length(self, prompt: str) -> int:
        if prompt not in self._prompt_lengths:
            ids = self.tokenizer(prompt)["input_ids"]
            length = len(ids)
            # A trailing special token (SEP/EOS) is not part of the prompt, as in sentence-transformers.
            if ids and ids[-1] in set(self.tokenizer.all_special_ids):
                length -= 1
            self._prompt_lengths[prompt] = length
        return self._prompt_lengths[prompt]
