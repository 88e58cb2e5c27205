"""The training loop for the Context Encoder and GLCIC, nanoGPT style: one config, one loop that
reads top to bottom (:func:`_train`: set up, then per batch a step in its phase, the log, samples,
validation and checkpoints), its parts in :class:`_Run`; what differs by kind is in train.kinds.

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

import copy
import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fastfill.errors import InputError

from . import checkpoint as ckpt
from .config import DataError, TrainConfig
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


# The settings that make a run's batches and losses: a resume must keep them (the steps, the
# outputs, the threads and the nets' widths may change; the nets are compared on their own).
RECIPE = ("batch_size", "crop", "scale", "flip", "mask", "tc", "td", "alpha", "local_size",
          "adadelta_lr", "adadelta_rho", "lambda_rec", "lambda_adv", "overlap_weight", "lr_d",
          "lr_ratio", "beta1", "adv", "fill", "optimizer", "lr", "warmup", "schedule", "seed",
          "val_fraction")


def _same_recipe(path, saved: dict | None, now: dict) -> None:
    """InputError naming the settings a resume would change (a checkpoint without them: none)."""
    if not isinstance(saved, dict):
        return
    norm = lambda v: json.loads(json.dumps(v))  # noqa: E731 (a tuple saved is a list)
    changed = [f"--{k.replace('_', '-')} {saved[k]!r} -> {now.get(k)!r}" for k in RECIPE
               if k in saved and norm(saved[k]) != norm(now.get(k))]
    if changed:
        raise InputError(f"--resume {path}: that run was trained with other settings "
                         f"({'; '.join(changed)}); resume it with its own, or start a new --out")


class _Stopper:
    """Turns the first Ctrl-C or SIGTERM into a flag checked between steps, so that the run
    saves where it is (a second one interrupts at once); ``signal``: the first one's number."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.stop, self.signal, self._old = False, None, {}

    def __enter__(self):
        try:
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread
            self._old = {}
        return self

    def _handle(self, signum, _frame):
        if self.stop:
            raise KeyboardInterrupt
        self.stop, self.signal = True, signum

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def _save_grid(path, rows):
    """rows: list of lists of float [3,H,W] tensors in [0,1] -> one PNG (input | output | truth)."""
    from PIL import Image
    grid = torch.cat([torch.cat(list(r), 2) for r in rows], 1)
    arr = np.rint(grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def train(cfg: TrainConfig, on_step=None) -> dict:
    """Run (or resume) training. `on_step(step, metrics)` is called after every completed step.

    Returns {"history": [metrics per step run], "checkpoint": path, "interrupted": False or the
    signal that stopped it (SIGINT, SIGTERM), ...}.
    """
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, on_step)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, on_step) -> dict:
    """The loop: set up, then one step per batch (log, samples, validation, checkpoint), then the
    last checkpoint."""
    out = Path(cfg.out)
    last, log_path = out / "last.safetensors", out / "log.jsonl"
    if not cfg.resume and last.exists():
        # (its checkpoint would be replaced and its log mixed with this run's)
        raise InputError(f"{cfg.out} holds a run (last.safetensors): continue it with --resume "
                         f"{last}, or choose another --out")
    if not cfg.resume and log_path.exists():  # (a run stopped before its first save)
        raise InputError(f"{cfg.out} holds a run's log.jsonl and no checkpoint (stopped before its "
                         "first save): choose another --out, or remove that run")
    if cfg.resume and last.exists() and last.resolve() != Path(cfg.resume).resolve():
        # (the resumed run would replace that run's checkpoint and cut its log to this one's)
        raise InputError(f"{cfg.out} holds another run ({last}) than {cfg.resume}: resume a run "
                         f"into its own folder, or choose another --out")
    if cfg.resume:  # (before anything is made: a run with nothing left to do)
        at = int(ckpt.read_meta(cfg.resume).get("step", 0))
        if at >= cfg.steps:
            raise InputError(f"{cfg.resume} is at step {at}, and --steps is {cfg.steps}: nothing to "
                             f"run (--steps is the total: raise it past {at} to continue)")
    torch.manual_seed(cfg.seed)
    data = _Data.load(cfg)  # (before the folder is made: a run refused leaves none behind)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {cfg.out}: cannot create the folder ({e.strerror or e})") from None
    _sweep(out)
    run = _Run(cfg, data)
    history, interrupted, done = [], False, max(run.start, cfg.steps)
    bar = tqdm(total=cfg.steps, initial=run.start, disable=not cfg.progress, dynamic_ncols=True,
               desc=f"{cfg.kind} train")
    run.G.train(), run.D.train()
    t0 = time.perf_counter()
    if run.start and (run.out / "log.jsonl").exists():
        _trim_log(run.out / "log.jsonl", run.start)
    with open(run.out / "log.jsonl", "a") as log:
        if run.val_set is not None and run.start == 0:  # the untrained net (a residual head: its prefill)
            run.evaluate(0, log, first=True)
        with _Stopper() as stopper:
            for step, (x, m) in enumerate(batches(run.data.train, cfg.batch_size, run.start, cfg.steps,
                                                  cfg.workers), run.start):
                met = run.step(step, x.to(run.dev, non_blocking=True), m.to(run.dev, non_blocking=True))
                history.append(met)
                _log_step(log, bar, met)
                if on_step is not None:
                    on_step(step, met)
                run.after_step(step + 1, log)
                if stopper.stop:
                    interrupted, done = (stopper.signal or True), step + 1
                    break
                if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                    run.save(step + 1)
    bar.close()
    path = run.save(done)  # with the phase the next step will run in
    elapsed = time.perf_counter() - t0
    return {"history": history, "checkpoint": path, "interrupted": interrupted, "step": done,
            "best": run.best if run.val_set is not None else None,
            "mean": run.mean, "seconds": elapsed, "steps_per_s": len(history) / elapsed if elapsed else 0.0}


def _sweep(out: Path) -> None:
    """What a run killed while saving left in its folder: the checkpoints' temporary files (ours,
    and safetensors' own ``.tmpXXXXXX`` beside them: as large as a checkpoint each)."""
    from fastfill.files.codecs import remove_stale_temps

    remove_stale_temps([out / f"{n}.{ext}" for n in ("last", "best") for ext in ("safetensors", "json")])
    for p in out.glob(".tmp*"):
        if len(p.name) == 10 and p.name[4:].isalnum() and p.is_file():  # (tempfile's pattern)
            try:
                p.unlink()
            except OSError:
                pass


def _trim_log(path: Path, start: int) -> None:
    """``log.jsonl`` cut back to what the checkpoint resumed at step ``start`` holds: a run
    killed after its last checkpoint logged steps that the resume runs again (they appeared
    twice), and a line cut short by the kill is dropped."""
    kept = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
            step = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if step < start or ("val" in rec and step <= start):  # (a validation at `start` ran before its save)
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


def _log_step(log, bar, met: dict) -> None:
    """A step's metrics: one line of log.jsonl, and the progress bar's postfix."""
    log.write(json.dumps(met) + "\n")
    log.flush()
    bar.update(1)
    bar.set_postfix({k: f"{v:.4g}" for k, v in met.items() if isinstance(v, float)} | {"phase": met["phase"]})


@dataclasses.dataclass
class _Data:
    """A run's photos: the training set, and the held-out files (validation and sample grids)."""

    root: Path
    train: ImageFolder
    train_files: list
    val_files: list

    @classmethod
    def load(cls, cfg: TrainConfig) -> _Data:
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
        if cfg.val_every and not val_files:  # (it validated nothing, saved no best, said nothing)
            where = (f"no images under --val-data {cfg.val_data}" if cfg.val_data else
                     f"--val-fraction {cfg.val_fraction:g} of {len(files)} photos holds none out")
            raise DataError(f"--val-every {cfg.val_every}: nothing to validate on ({where}); give "
                            "--val-data, or leave --val-every out")
        ds = ImageFolder(root, cfg.crop, cfg.scale, cfg.flip, cfg.mask, cfg.seed, files=train_files)
        return cls(root, ds, train_files, val_files)

    def describe(self, cfg: TrainConfig) -> dict:
        """What the checkpoints record of the data."""
        return {"root": str(self.root.resolve()), "n_train": len(self.train), "n_val": len(self.val_files),
                "val_fraction": cfg.val_fraction, "seed": cfg.seed, "skipped": self.train.skipped,
                "val_files": [Path(p).relative_to(self.root).as_posix() if not cfg.val_data
                              else str(Path(p).resolve()) for p in self.val_files]}

    def sample_batch(self, cfg: TrainConfig, dev) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed (images, masks) of the sample grids: held-out photos when there are any."""
        ds = ImageFolder(self.root, cfg.crop, (1.0, 1.0), False, cfg.mask, cfg.seed + 1,
                         files=self.val_files or self.train_files, warn=lambda *_: None)
        pairs = [ds[i] for i in range(cfg.n_samples)]
        return torch.stack([p[0] for p in pairs]).to(dev), torch.stack([p[1] for p in pairs]).to(dev)

    def val_set(self, cfg: TrainConfig, kind) -> tuple[np.ndarray, np.ndarray] | None:
        """(images, masks) of the held-out crops validated every ``val_every`` steps, or None."""
        if not (cfg.val_every and self.val_files):
            return None
        from .evaluate import load_eval_set
        return load_eval_set(cfg.val_data or self.root, cfg.crop, kind.eval_mask(cfg.mask), cfg.seed + 7,
                             files=self.val_files, crops=cfg.val_crops)[:2]


def _device(name: str) -> torch.device:
    """``auto``: cuda when available, else the cpu; any other name as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this torch has no CUDA device (built for the CPU, or no "
                         "GPU); use --device cpu")
    return torch.device(name)


class _Run:
    """One run's state: its kind, the generator G and discriminator D (and the average E of G with
    ``ema``), their optimisers, the mean colour, the best validation so far. The methods are the
    loop's parts: a step per phase, evaluation and samples, checkpoints."""

    def __init__(self, cfg: TrainConfig, data: _Data):
        self.cfg, self.data, self.out = cfg, data, Path(cfg.out)
        self.dev = _device(cfg.device)
        self.kind = KINDS[cfg.kind]
        self.G, self.D, self.opt_g, self.opt_d = self.kind.build(cfg, self.dev)
        if cfg.optimizer == "adam":
            self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr / 10, betas=(0.5, 0.999))
        self.models, self.opts = {"G": self.G, "D": self.D}, {"G": self.opt_g, "D": self.opt_d}
        self.E = None
        if cfg.ema:
            self.E = self.models["E"] = copy.deepcopy(self.G).requires_grad_(False)
        self.adv = make_adversarial_loss(cfg.adv)
        self.start, mean = self._resume() if cfg.resume else (0, None)
        self.mean = data.train.mean_color() if mean is None else mean
        self.data_desc = data.describe(cfg)
        self.train_desc = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("resume", "progress")}
        self.train_desc["device"] = str(self.dev)
        self.samples = data.sample_batch(cfg, self.dev) if cfg.sample_every else None
        self.val_set = data.val_set(cfg, self.kind)
        self.best = {"psnr_hole": -1.0}
        if cfg.resume and (self.out / "best.json").exists():
            self.best = json.loads((self.out / "best.json").read_text()).get("val", self.best)

    def _resume(self) -> tuple[int, list | None]:
        """Restore the nets and optimisers of the checkpoint ``cfg.resume``: (its step, its mean)."""
        path = ckpt.checkpoint_path(self.cfg.resume)
        saved_meta = ckpt.read_meta(path)
        _same_recipe(path, saved_meta.get("train"), dataclasses.asdict(self.cfg))
        saved, saved_phase = saved_meta["models"], self.kind.phase(int(saved_meta["step"]), self.cfg)
        models = {k: v for k, v in self.models.items() if k in saved or k != "E"}
        opts = dict(self.opts)
        if saved.get("D") != self.D.config() and saved_phase == "completion":
            # The discriminators have not trained yet: a new --d-width starts them afresh.
            print(f"resume: discriminator config {saved.get('D')} -> {self.D.config()}; it has not "
                  "trained yet (completion phase), so it starts afresh", flush=True)
            del models["D"], opts["D"]
        meta = ckpt.restore_training_state(path, models, opts)
        if self.E is not None and "E" not in saved:  # an average started on resume starts from the weights
            self.E.load_state_dict(self.G.state_dict())
        return int(meta["step"]), meta["mean"]

    # -- the generator's input and output
    def shown_net(self):
        """The generator that is validated, sampled and kept as best: the average when there is one."""
        return self.G if self.E is None else self.E

    def model_input(self, x, m):
        return self.kind.model_input(x, self.kind.train_hidden(self.G, m), self.mean, self.cfg.fill)

    def generate(self, x, m, net=None, inp=None):
        """(generator output, completed full image) for images x and masks m; ``inp`` is
        model_input(x, m) when the caller has it already (the harmonic prefill is a solve)."""
        net = self.G if net is None else net
        y = net(self.model_input(x, m) if inp is None else inp)
        return y, self.kind.complete(self.G, x, m, y)

    # -- one training step
    def step(self, step: int, x, m) -> dict:
        """One step at 0-based ``step`` on images x and masks m, in the phase it falls in: its metrics."""
        cfg = self.cfg
        phase = self.kind.phase(step, cfg)
        if cfg.optimizer == "adam":
            for g in self.opt_g.param_groups:
                g["lr"] = lr_schedule(step, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule)
        phase_step = {"completion": self.completion_step, "discriminator": self.discriminator_step,
                      "joint": self.joint_step}[phase]
        return {"step": step, "phase": phase, **phase_step(x, m, step)}

    def completion_step(self, x, m, step) -> dict:
        """The generator alone, on the reconstruction loss in the hole."""
        met = {}
        inp = self.model_input(x, m)
        y, _ = self.generate(x, m, inp=inp)
        loss = masked_mse(y, x, m)
        if self.cfg.head == "residual":  # what the correction must beat
            with torch.no_grad():
                met["prefill_rec"] = masked_mse(inp[:, :3], x, m).item()
        self._g_update(loss)
        met["g_rec"] = loss.item()
        return met

    def discriminator_step(self, x, m, step) -> dict:
        """The discriminator alone, on real images against the generator's completions."""
        with torch.no_grad():
            y, completed = self.generate(x, m)
        return self._d_update(x, m, self.kind.fake(y, completed), step)

    def joint_step(self, x, m, step) -> dict:
        """Both: the discriminator, then the generator on the kind's reconstruction + adversarial loss."""
        y, completed = self.generate(x, m)
        fake = self.kind.fake(y, completed)
        met = self._d_update(x, m, fake.detach(), step)
        rec, w_rec, w_adv = self.kind.joint_loss_terms(self.G, y, x, m, self.cfg)
        g_adv, gm = self.adv.generator_loss(self.kind.fake_logits(self.D, m, fake, self.cfg))
        loss = w_rec * rec + w_adv * g_adv
        self._g_update(loss)
        return {**met, **gm, "g_rec": rec.item(), "g_loss": loss.item()}

    def _d_update(self, x, m, fake, step) -> dict:
        """One discriminator update on real x vs generated ``fake`` (detached): its metrics."""
        loss, met = self.adv.discriminator_loss(self.kind.real_logits(self.G, self.D, x, self.cfg, step),
                                                self.kind.fake_logits(self.D, m, fake, self.cfg))
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return met

    def _g_update(self, loss) -> None:
        """One generator update on ``loss``, then the moving average's."""
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        if self.E is not None:
            with torch.no_grad():
                for pe, p in zip(self.E.parameters(), self.G.parameters()):
                    pe.mul_(self.cfg.ema).add_(p, alpha=1 - self.cfg.ema)
                for be, b in zip(self.E.buffers(), self.G.buffers()):
                    be.copy_(b)

    # -- between steps: samples and validation
    def after_step(self, done: int, log) -> None:
        """After ``done`` steps: the sample grid and the validation when they are due."""
        if self.samples is not None and done % self.cfg.sample_every == 0:
            self.write_samples(done)
        if self.val_set is not None and done % self.cfg.val_every == 0:
            self.evaluate(done, log)

    def evaluate(self, step: int, log, first: bool = False) -> None:
        """Validate, log it, and keep the generator as best.safetensors when it is the best yet
        (the first validation always)."""
        val = self.validate(step)
        log.write(json.dumps({"step": step, "val": val}) + "\n")
        log.flush()
        if first or val["model"]["psnr_hole"] > self.best["psnr_hole"]:
            b = dict(val["model"], step=step, prefill=val["prefill"]["psnr_hole"])
            self.save(step, "best", {"val": b}, only={"G": self.shown_net()})  # for export; resume from last
            self.best = b

    def validate(self, step: int) -> dict:
        """Hole PSNR, SSIM, L1 and texture distance of the model and of its prefill alone on the
        held-out crops."""
        from .evaluate import metrics
        images, masks = self.val_set
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(self.dev)
        m = torch.from_numpy(masks).float()[:, None].to(self.dev)
        net = self.shown_net()
        net.eval()
        with torch.no_grad():
            inp = self.model_input(x, m)
            full = torch.cat([self.generate(x[i:i + 8], m[i:i + 8], net, inp[i:i + 8])[1]
                              for i in range(0, len(x), 8)])
            pre = inp[:, :3]  # the prefilled image the net is given (both kinds: RGB first)
        net.train()
        res = {}
        for name, t in (("model", full), ("prefill", pre)):
            u8 = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            per = [metrics(np.where(mk[..., None], o, im), im, mk) for o, im, mk in zip(u8, images, masks)]
            res[name] = {k: float(np.mean([p[k] for p in per]))
                         for k in ("psnr_hole", "ssim_hole", "l1_hole", "texture")}
        return res

    def write_samples(self, step: int) -> None:
        """samples/step_N.png: input | output | truth of the fixed sample batch."""
        x, m = self.samples
        net = self.shown_net()
        net.eval()
        with torch.no_grad():
            _, full = self.generate(x, m, net)
            shown_in = self.model_input(x, m)[:, :3]
        net.train()
        _save_grid(self.out / "samples" / f"step_{step:07d}.png",
                   [(a.cpu(), b.cpu(), c.cpu()) for a, b, c in zip(shown_in, full, x)])

    # -- checkpoints
    def save(self, step: int, name: str = "last", extra: dict | None = None, only: dict | None = None):
        """OUT/<name>.safetensors (+ .json) after ``step`` steps: every net and optimiser, or
        ``only`` those nets."""
        meta = {"kind": self.cfg.kind, "config": self.G.config(), "mean": self.mean, "step": step,
                "phase": self.kind.phase(step, self.cfg), "fill": self.cfg.fill, "data": self.data_desc,
                "train": self.train_desc, "receptive_field": getattr(self.G, "receptive_field", None),
                **(extra or {})}
        return ckpt.save_checkpoint(self.out / name, models=only or self.models,
                                    optimizers=None if only else self.opts, meta=meta)


__all__ = ["TrainConfig", "train", "glcic_phase", "crop_patches", "prefill", "lr_schedule"]
