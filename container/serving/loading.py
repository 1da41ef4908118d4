"""Turn the model folder into a served model: code/inference.py when present, else a Hugging Face folder."""

from __future__ import annotations

import logging
import time
from pathlib import Path, PurePosixPath

from serving.errors import ModelLoadError
from serving.handlers.base import ServedModel
from serving.handlers.custom_code import load_custom_code
from serving.handlers.huggingface import HuggingFaceModel
from serving.predictors.base import Predictor
from serving.settings import Settings

log = logging.getLogger(__name__)


def load_served_model(settings: Settings) -> ServedModel:
    """Heavy (imports torch, reads weights): run it off the event loop."""
    started = time.monotonic()
    folder = settings.model_dir
    if not folder.is_dir():
        raise ModelLoadError(
            f"model directory {folder} does not exist; mount the model at /opt/ml/model or set MODEL_DIR"
        )
    code = entry_point(folder, settings.program)
    model: ServedModel
    if code.is_file():
        if (folder / "code" / "requirements.txt").is_file():
            log.warning(
                "%s is not installed: the container serves without network access; "
                "build those packages into the image instead",
                folder / "code" / "requirements.txt",
            )
        model = load_custom_code(
            code, folder, lambda: _load_predictor(settings), settings.default_accept, settings.max_batch_size
        )
    else:
        model = HuggingFaceModel(
            _load_predictor(settings),
            settings.max_batch_size,
            settings.max_batch_delay_s,
            settings.default_accept,
        )
    log.info("loaded %s from %s in %.1f s", model.description, folder, time.monotonic() - started)
    return model


def entry_point(folder: Path, program: str) -> Path:
    """code/<SAGEMAKER_PROGRAM>, refused unless it stays inside the model's code folder.

    Joined as is, an absolute SAGEMAKER_PROGRAM replaces the folder and `../../x.py` climbs out of it:
    either would run a script from anywhere in the image instead of the model's own code.
    """
    code_dir = folder / "code"
    relative = PurePosixPath(program)
    if not program.strip() or relative.is_absolute() or ".." in relative.parts:
        raise ModelLoadError(
            f"SAGEMAKER_PROGRAM={program!r} is not a file inside {code_dir}: set it to a relative name "
            "without '..', such as inference.py"
        )
    path = code_dir.joinpath(*relative.parts)
    if path.exists() and not path.resolve().is_relative_to(code_dir.resolve()):
        raise ModelLoadError(
            f"SAGEMAKER_PROGRAM={program!r} leads through a link to {path.resolve()}, outside {code_dir}: "
            "put the script itself in the model's code folder"
        )
    return path


def _load_predictor(settings: Settings) -> Predictor:
    # torch and transformers are imported here, not at module import: the supervisor never needs them.
    from serving.device import choose_placement
    from serving.predictors.factory import build_predictor
    from serving.task_inference import resolve_task

    task = resolve_task(settings.model_dir, settings.hf_task)
    placement = choose_placement(settings.device, settings.dtype)
    log.info("task %s on %s in %s", task, placement.device, settings.dtype)
    return build_predictor(
        settings.model_dir, task, placement, settings.max_batch_size, settings.pack_sequences
    )
