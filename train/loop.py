"""The training loops for the Context Encoder and GLCIC, nanoGPT style: one config, one function.

    from train.loop import TrainConfig, train
    train(TrainConfig(kind="glcic", data="photos/", out="runs/glcic", width=0.25))

Defaults are the papers' numbers:
  GLCIC  batch 96, 256x256 crops of images resized to a shorter side of 256..384, one random
         rectangle hole with sides 96..128, ADADELTA, Tc = 90,000 completion-only iterations,
         Td = 10,000 discriminator-only iterations, joint training to 150,000 with alpha = 0.0004;
         the local discriminator sees the 128x128 patch centred on the hole (a random patch of the
         real image for real samples).
  CE     batch 64, 128x128 crops, central 64x64 prediction with a 7 px overlap (50x50 hole),
         Adam (beta1 0.5), lambda_rec = 0.999, lambda_adv = 0.001, overlap band weighted 10x,
         the encoder-decoder's learning rate 10x the discriminator's (2e-3 vs 2e-4).
Every `save_every` steps, at the end, and on Ctrl-C, `OUT/last.safetensors` (+ `.json`) is written;
`resume=OUT/last.safetensors` continues with identical batches and losses.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .config import PAPER_DEFAULTS, DataError, TrainConfig  # noqa: F401 (re-exported)
from .data import ImageFolder, batches, photo_files, split_files
from .kinds import KINDS, crop_patches, glcic_phase, prefill  # noqa: F401 (re-exported)
from .losses import make_adversarial_loss, masked_mse

def lr_schedule(step: int, lr: float, warmup: int, steps: int, schedule: str = "constant") -> float:
    """Learning rate at 0-based `step`: linear warm-up over `warmup` steps, then constant or a
    cosine decay that reaches 0 at `steps`."""
    if warmup and step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "cosine" and steps > warmup:
        t = min(1.0, (step - warmup) / (steps - warmup))
        return lr * 0.5 * (1 + np.cos(np.pi * t))
    return lr


class _Stopper:
    """Turns the first Ctrl-C into a flag checked between steps (a second one interrupts at once)."""

    def __init__(self):
        self.stop, self._old = False, None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handle(self, *_):
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _save_grid(path, rows):
    """rows: list of lists of float [3,H,W] tensors in [0,1] -> one PNG (input | output | truth)."""
    from PIL import Image
    grid = torch.cat([torch.cat(list(r), 2) for r in rows], 1)
    arr = np.rint(grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def train(cfg: TrainConfig, on_step=None) -> dict:
    """Run (or resume) training. `on_step(step, metrics)` is called after every completed step.

    Returns {"history": [metrics per step run], "checkpoint": path, "interrupted": bool, ...}.
    """
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, on_step)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, on_step) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    # ---- data
    root = Path(cfg.data)
    files = photo_files(root)
    if not files:
        raise DataError(f"no images (jpg, png, webp) under {root}")
    if cfg.val_data:
        train_files, val_files = files, photo_files(Path(cfg.val_data))
    else:
        train_files, val_files = split_files(files, root, cfg.val_fraction)
    if not train_files:
        raise DataError(f"no training images under {root} (found {len(files)}, all held out for validation)")
    ds = ImageFolder(root, cfg.crop, cfg.scale, cfg.flip, cfg.mask, cfg.seed, files=train_files)

    # ---- models and optimisers
    dev = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available()
                       else "cpu" if cfg.device == "auto" else cfg.device)
    kind = KINDS[cfg.kind]
    G, D, opt_g, opt_d = kind.build(cfg, dev)
    if cfg.optimizer == "adam":
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr / 10, betas=(0.5, 0.999))
    models, opts = {"G": G, "D": D}, {"G": opt_g, "D": opt_d}
    if cfg.ema:
        import copy
        E = copy.deepcopy(G).requires_grad_(False)
        models["E"] = E

    def ema_update():
        if not cfg.ema:
            return
        with torch.no_grad():
            for pe, p in zip(E.parameters(), G.parameters()):
                pe.mul_(cfg.ema).add_(p, alpha=1 - cfg.ema)
            for be, b in zip(E.buffers(), G.buffers()):
                be.copy_(b)

    def shown_net():
        """The generator that is validated, sampled and kept as best: the average when there is one."""
        return E if cfg.ema else G
    adv = make_adversarial_loss(cfg.adv)

    start, mean = 0, None
    if cfg.resume:
        path = ckpt.checkpoint_path(cfg.resume)
        saved_meta = ckpt.read_meta(path)
        saved = saved_meta["models"]
        restore_models = {k: v for k, v in models.items() if k in saved or k != "E"}
        restore_opts = dict(opts)
        if saved.get("D") != D.config() and kind.phase(int(saved_meta["step"]), cfg) == "completion":
            # The discriminators have not trained yet: a new --d-width starts them afresh.
            print(f"resume: discriminator config {saved.get('D')} -> {D.config()}; it has not "
                  "trained yet (completion phase), so it starts afresh", flush=True)
            del restore_models["D"], restore_opts["D"]
        meta = ckpt.restore_training_state(path, restore_models, restore_opts)
        if cfg.ema and "E" not in saved:  # an average started on resume starts from the weights
            E.load_state_dict(G.state_dict())
        start, mean = int(meta["step"]), meta["mean"]
    if mean is None:
        mean = ds.mean_color()
    data_desc = {"root": str(root.resolve()), "n_train": len(ds), "n_val": len(val_files),
                 "val_fraction": cfg.val_fraction, "seed": cfg.seed, "skipped": ds.skipped,
                 "val_files": [Path(p).relative_to(root).as_posix() if not cfg.val_data else str(p)
                               for p in val_files]}
    train_desc = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("resume", "progress")}
    train_desc["device"] = str(dev)

    # fixed sample batch for the grids: held-out images when there are any
    sample_ds = ImageFolder(root, cfg.crop, (1.0, 1.0), False, cfg.mask, cfg.seed + 1,
                            files=val_files or train_files, warn=lambda *_: None) if cfg.sample_every else None
    if sample_ds is not None:
        pairs = [sample_ds[i] for i in range(cfg.n_samples)]
        sample_x = torch.stack([p[0] for p in pairs]).to(dev)
        sample_m = torch.stack([p[1] for p in pairs]).to(dev)

    def phase_at(step):
        return kind.phase(step, cfg)

    def model_input(x, m):
        return kind.model_input(x, kind.train_hidden(G, m), mean, cfg.fill)

    def generate(x, m, net=None, inp=None):
        """(generator output, completed full image) for images x and masks m; ``inp`` is
        model_input(x, m) when the caller has it already (the harmonic prefill is a solve)."""
        net = G if net is None else net
        y = net(model_input(x, m) if inp is None else inp)
        return y, kind.complete(G, x, m, y)

    def d_step(x, m, fake, step):
        """One discriminator update on real x vs generated `fake` (detached)."""
        loss, met = adv.discriminator_loss(kind.real_logits(G, D, x, cfg, step),
                                           kind.fake_logits(D, m, fake, cfg))
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        return met

    def save(step, phase, name="last", extra=None, only=None):
        return ckpt.save_checkpoint(out / name, models=only or models, optimizers=None if only else opts, meta={
            "kind": cfg.kind, "config": G.config(), "mean": mean, "step": step, "phase": phase,
            "fill": cfg.fill, "data": data_desc, "train": train_desc,
            "receptive_field": getattr(G, "receptive_field", None), **(extra or {})})

    def save_best(step, val):
        """best.safetensors: the validated generator alone (for export; resume from last)."""
        b = dict(val["model"], step=step, prefill=val["prefill"]["psnr_hole"])
        save(step, phase_at(step), "best", {"val": b}, only={"G": shown_net()})
        return b

    val_set = None
    if cfg.val_every and val_files:
        from .evaluate import load_eval_set
        val_set = load_eval_set(cfg.val_data or root, cfg.crop, kind.eval_mask(cfg.mask), cfg.seed + 7,
                                files=val_files, crops=cfg.val_crops)[:2]
    best = {"psnr_hole": -1.0}
    if cfg.resume and (out / "best.json").exists():
        best = json.loads((out / "best.json").read_text()).get("val", best)

    def validate(step):
        """Hole PSNR of the model and of its prefill alone on the held-out crops."""
        from .evaluate import metrics
        images, masks = val_set
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(dev)
        m = torch.from_numpy(masks).float()[:, None].to(dev)
        net = shown_net()
        net.eval()
        with torch.no_grad():
            inp = model_input(x, m)
            full = torch.cat([generate(x[i:i + 8], m[i:i + 8], net, inp[i:i + 8])[1]
                              for i in range(0, len(x), 8)])
            pre = inp[:, :3]  # the prefilled image the net is given (both kinds: RGB first)
        net.train()
        res = {}
        for name, t in (("model", full), ("prefill", pre)):
            u8 = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            per = [metrics(np.where(mk[..., None], o, im), im, mk) for o, im, mk in zip(u8, images, masks)]
            res[name] = {k: float(np.mean([p[k] for p in per])) for k in ("psnr_hole", "ssim_hole", "l1_hole")}
        return res

    def lr_at(step):
        return lr_schedule(step, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule)

    def write_samples(step):
        net = shown_net()
        net.eval()
        with torch.no_grad():
            _, full = generate(sample_x, sample_m, net)
            shown_in = model_input(sample_x, sample_m)[:, :3]
        net.train()
        _save_grid(out / "samples" / f"step_{step:07d}.png",
                   [(a.cpu(), b.cpu(), c.cpu()) for a, b, c in zip(shown_in, full, sample_x)])

    history, interrupted, step = [], False, start
    log = open(out / "log.jsonl", "a")
    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=start, disable=not cfg.progress, dynamic_ncols=True,
               desc=f"{cfg.kind} train")
    G.train(), D.train()
    t0 = time.perf_counter()
    if val_set is not None and start == 0:  # the untrained net (a residual head: its prefill)
        val = validate(0)
        log.write(json.dumps({"step": 0, "val": val}) + "\n")
        best = save_best(0, val)
    with _Stopper() as stopper:
        for step, (x, m) in enumerate(batches(ds, cfg.batch_size, start, cfg.steps, cfg.workers), start):
            x, m = x.to(dev, non_blocking=True), m.to(dev, non_blocking=True)
            phase = phase_at(step)
            met = {"step": step, "phase": phase}
            if cfg.optimizer == "adam":
                for g in opt_g.param_groups:
                    g["lr"] = lr_at(step)
            if phase == "completion":
                inp = model_input(x, m)
                y, _ = generate(x, m, inp=inp)
                loss = masked_mse(y, x, m)
                if cfg.head == "residual":  # what the correction must beat
                    with torch.no_grad():
                        met["prefill_rec"] = masked_mse(inp[:, :3], x, m).item()
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                ema_update()
                met["g_rec"] = loss.item()
            elif phase == "discriminator":
                with torch.no_grad():
                    y, completed = generate(x, m)
                met.update(d_step(x, m, kind.fake(y, completed), step))
            else:
                y, completed = generate(x, m)
                fake = kind.fake(y, completed)
                met.update(d_step(x, m, fake.detach(), step))
                rec, w_rec, w_adv = kind.joint_loss_terms(G, y, x, m, cfg)
                g_adv, gm = adv.generator_loss(kind.fake_logits(D, m, fake, cfg))
                loss = w_rec * rec + w_adv * g_adv
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                ema_update()
                met.update(gm, g_rec=rec.item(), g_loss=loss.item())
            history.append(met)
            log.write(json.dumps(met) + "\n")
            log.flush()
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in met.items() if isinstance(v, float)} | {"phase": phase})
            done = step + 1
            if on_step is not None:
                on_step(step, met)
            if sample_ds is not None and done % cfg.sample_every == 0:
                write_samples(done)
            if val_set is not None and done % cfg.val_every == 0:
                val = validate(done)
                log.write(json.dumps({"step": done, "val": val}) + "\n")
                log.flush()
                if val["model"]["psnr_hole"] > best["psnr_hole"]:
                    best = save_best(done, val)
            if stopper.stop:
                interrupted = True
                break
            if done % cfg.save_every == 0 and done < cfg.steps:
                save(done, phase_at(done))
        else:
            done = max(start, cfg.steps)
    bar.close()
    log.close()
    path = save(done, phase_at(done))  # the phase the next step will run in
    elapsed = time.perf_counter() - t0
    return {"history": history, "checkpoint": path, "interrupted": interrupted, "step": done,
            "best": best if val_set is not None else None,
            "mean": mean, "seconds": elapsed, "steps_per_s": len(history) / elapsed if elapsed else 0.0}


__all__ = ["TrainConfig", "train", "glcic_phase", "crop_patches", "prefill", "lr_schedule", "PAPER_DEFAULTS"]
