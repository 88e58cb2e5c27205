"""Checkpoints: safetensors weights + JSON, never pickle.

One checkpoint is one file `NAME.safetensors` holding every tensor (model weights and buffers,
optimizer states) with the JSON description embedded in the safetensors header metadata under the
key "fastfill"; a human-readable copy of that JSON is written beside it as `NAME.json`. Both are
written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.

Tensor keys: "model.<role>.<state_dict key>" (roles: "G" the generator, "D" the discriminator),
"optim.<role>.<param index>.<state key>".

The JSON (returned as `meta` by load_checkpoint) holds at least:
  kind      the model kind (a key of train.kinds.KINDS)
  config    the generator's config dict; `train.models.build_model(config)` rebuilds it
  models    {role: config} for every saved model
  mean      [r, g, b] in [0, 1], the training set's mean colour (the hole fill)
  step      optimisation steps completed
  phase     "completion" | "discriminator" | "joint" (GLCIC) or "joint" (CE)
  data      description of the training data (root, counts, held-out files, seed)
  train     the training configuration (hyper-parameters)
  optimizers {role: {"param_groups": [...], "scalars": {...}}}
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fastfill.errors import InputError
from fastfill.files.codecs import atomic_write

from .models import build_model

FORMAT = "fastfill-checkpoint"
VERSION = 1


def checkpoint_path(path) -> Path:
    """Normalise a checkpoint name: adds `.safetensors` when no suffix is given."""
    p = Path(path)
    return p if p.suffix == ".safetensors" else p.with_name(p.name + ".safetensors")


def save_checkpoint(path, *, models: dict, meta: dict, optimizers: dict | None = None) -> Path:
    """Write `models` ({role: nn.Module}, role "G" = generator) and `optimizers` ({role: Optimizer})
    with `meta` (kind, mean, step, phase, data, train, ...) atomically. Returns the .safetensors path.
    """
    path = checkpoint_path(path)
    tensors, opt_meta = {}, {}
    for role, m in models.items():
        for k, v in m.state_dict().items():
            tensors[f"model.{role}.{k}"] = v.detach().cpu().contiguous()
    for role, opt in (optimizers or {}).items():
        sd = opt.state_dict()
        scalars = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim.{role}.{idx}.{k}"] = v.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[k] = v
        opt_meta[role] = {"param_groups": sd["param_groups"], "scalars": scalars}
    full = dict(meta)
    full.update({
        "format": FORMAT,
        "version": VERSION,
        "models": {role: m.config() for role, m in models.items()},
        "optimizers": opt_meta,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "torch": torch.__version__,
    })
    if "G" in models:
        full.setdefault("config", models["G"].config())
    text = json.dumps(full, indent=1, sort_keys=True, default=_json_default)
    # replaced as training goes on: overwrite
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"fastfill": text}), overwrite=True)
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text + "\n"), overwrite=True)
    return path


def _json_default(o):
    if isinstance(o, tuple):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if torch.is_tensor(o) and o.numel() == 1:
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_meta(path) -> dict:
    """The JSON description of a checkpoint, without loading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise InputError(f"{path}: not a safetensors checkpoint ({e})") from e
    if "fastfill" not in md:
        raise InputError(f"{path}: safetensors file without fastfill checkpoint metadata")
    try:
        meta = json.loads(md["fastfill"])
    except ValueError as e:
        raise InputError(f"{path}: damaged fastfill metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise InputError(f"{path}: unknown checkpoint format {got!r}")
    if not isinstance(meta.get("models"), dict):
        raise InputError(f"{path}: damaged fastfill metadata (no models listed)")
    return meta


def _load_tensors(path, prefix: str) -> dict:
    out = {}
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            if k.startswith(prefix):
                out[k[len(prefix):]] = f.get_tensor(k)
    return out


def load_model(path, role: str = "G") -> torch.nn.Module:
    """Rebuild the model saved under `role` and load its weights (left in train mode)."""
    meta = read_meta(path)
    if role not in meta["models"]:
        raise InputError(f"{path}: no model {role!r} (has {', '.join(meta['models'])})")
    model = build_model(meta["models"][role])
    model.load_state_dict(_load_tensors(path, f"model.{role}."), strict=True)
    return model


def load_checkpoint(path, role: str = "G"):
    """Load a checkpoint: returns (generator in eval mode, meta dict). See module doc for meta."""
    model = load_model(path, role)
    return model.eval(), read_meta(path)


def load_for_inference(checkpoint, error=InputError):
    """(path, generator in eval mode, meta) from a checkpoint path or NAME (NAME.safetensors);
    a missing or unreadable checkpoint is one `error` (an InputError, or the caller's kind)."""
    path = Path(checkpoint)
    if not path.exists():
        path = checkpoint_path(checkpoint)
    if not path.exists():
        raise error(f"checkpoint not found: {checkpoint}")
    try:
        model, meta = load_checkpoint(path)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as e:
        # (TypeError, AttributeError: JSON of the wrong shape; a size mismatch lists every tensor)
        said = str(e)
        raise error(f"cannot load checkpoint {path}: "
                    f"{said if len(said) <= 400 else said[:400] + ' ...'}") from None
    return path, model, meta


def restore_training_state(path, models: dict, optimizers: dict) -> dict:
    """Load weights into existing `models` and state into `optimizers` (for --resume); returns meta."""
    meta = read_meta(path)
    for role, m in models.items():
        if meta["models"].get(role) != m.config():
            raise InputError(f"{path}: model {role} config {meta['models'].get(role)} does not match "
                             f"the run's {m.config()}")
        m.load_state_dict(_load_tensors(path, f"model.{role}."), strict=True)
    for role, opt in optimizers.items():
        om = meta["optimizers"].get(role)
        if om is None:  # (best.safetensors keeps the generator alone, for export)
            raise InputError(f"{path}: no optimizer state for {role!r}: a checkpoint to export, "
                             "not to resume; resume from the run's last.safetensors")
        flat = _load_tensors(path, f"optim.{role}.")
        state: dict = {}
        for k, v in flat.items():
            idx, name = k.split(".", 1)
            state.setdefault(int(idx), {})[name] = v
        for idx, sc in om["scalars"].items():
            state.setdefault(int(idx), {}).update(sc)
        groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
                  for g in om["param_groups"]]  # JSON turned tuples (Adam's betas) into lists
        opt.load_state_dict({"state": state, "param_groups": groups})
    return meta


__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "read_meta", "restore_training_state",
           "checkpoint_path"]
