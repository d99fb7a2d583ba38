"""CLIP and CLAP through Hugging Face transformers: image, audio and class-name embeddings.

The ClipClap-GZSL recipe (its ``clip_feature_extraction`` and
``clip_embeddings_extraction`` scripts), with transformers' ``CLIPModel`` and
``ClapModel`` in place of the ``clip`` package and WavCaps:

- video: ``CLIPModel.get_image_features`` of the frame(s), L2-normalised;
- audio: ``ClapModel.get_audio_features`` (transformers L2-normalises it) of the
  audio resampled to the CLAP feature extractor's rate and centre-cropped to its
  window (``max_length_s``, 10 s for the LAION models); shorter audio is padded as
  the feature extractor is configured (``repeatpad`` for LAION CLAP). The
  extractor runs per clip, so a video's features never depend on the other videos
  of its batch (the ``fusion`` extractor marks a random clip of a batch without
  long clips as long; with one clip that choice is always the same);
- class embeddings: each class name in every prompt template, each prompt's text
  embedding L2-normalised, their mean L2-normalised; CLIP text ‖ CLAP text.

Models are loaded with ``from_pretrained`` from a local directory or, by name,
from the user's Hugging Face cache only (``local_files_only``): avbench downloads
nothing. A model that cannot be found is one :class:`DataError` line saying how
to get it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from avbench.errors import DataError

# ClipClap used OpenAI's CLIP ViT-B/32 (512-d) and WavCaps' HTS-AT/BERT CLAP (1024-d). WavCaps has no
# transformers port; LAION's HTS-AT CLAP (512-d projection) is the transformers model nearest to it.
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_CLAP = "laion/larger_clap_general"

# Prompt templates, as ClipClap-GZSL's clip_embeddings_extraction scripts: "action" for UCF and ActivityNet
# (a person doing something), "sound" for VGGSound; "plain" is the bare name.
_MEDIA = ("a photo of", "a video of", "a example of", "a demonstration of")
_VERBS = ("", "using ", "doing ", "during ", "performing ", "practicing ")


def _action_clip() -> list[str]:
    return [f"{m} {who} {v}{{}}." for v in _VERBS for who in ("a person", "the person") for m in _MEDIA]


def _action_clap() -> list[str]:
    out = []
    for v in _VERBS:
        whos = ["a person", "a example of a person", "a demonstration of a person", "the person",
                "a example of the person", "a demonstration of the person"]
        if v:
            whos.remove("the person")
        if v == "during ":
            whos.remove("a person")
        out += [f"{who} {v}{{}} can be heard." for who in whos]
    return out


TEMPLATES = {
    "action": (_action_clip(), _action_clap()),
    "sound": (
        ["a photo of {}.", "a video of {}.", "a example of {}.", "a demonstration of {}.",
         "a photo of the person {}.", "a video of the {}.", "a example of the {}.", "a demonstration of the {}."],
        ["a {} can be heard.", "a example of a {} can be heard.", "a demonstration of a {} can be heard.",
         "the {} can be heard.", "a example of the {} can be heard.", "a demonstration of the {} can be heard.",
         "{} can be heard.", "a example of {} can be heard.", "a demonstration of {} can be heard."],
    ),
    "plain": (["{}"], ["{}"]),
}
# which templates each settings family's classes get by default
DEFAULT_TEMPLATES = {"ucf": "action", "activitynet": "action", "vggsound": "sound"}


def hf_cache_dir() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub always has it
        return os.path.expanduser("~/.cache/huggingface/hub")


def _load(kind: str, flag: str, name: str, model_cls):
    from transformers import AutoProcessor

    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and path.exists()
    if path.is_dir():
        src = str(path)
    elif looks_like_path:
        raise DataError(f"{flag} {name}: no such directory (expected a saved {model_cls.__name__} folder)")
    else:
        src = name
    try:
        model = model_cls.from_pretrained(src, local_files_only=True)
        processor = AutoProcessor.from_pretrained(src, local_files_only=True)
    except OSError as e:
        if path.is_dir():
            raise DataError(f"{flag} {name}: not a saved {model_cls.__name__} with its processor "
                            f"({str(e).splitlines()[0][:160]})") from None
        raise DataError(
            f"{kind} model {name!r} is neither a local directory nor in the Hugging Face cache ({hf_cache_dir()}); "
            f"get it with `hf download {name}` or pass {flag} DIR"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{flag} {name}: cannot be loaded as {model_cls.__name__} "
                        f"({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    return model.eval(), processor, src


def _pooled(out):
    """transformers >= 5 returns a model output whose ``pooler_output`` is the projected embedding."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise DataError(f"--device {device}: expected cpu, cuda or auto")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
    return device


class Encoders:
    """A CLIP and a CLAP model with their processors, on one device."""

    def __init__(self, clip: str = DEFAULT_CLIP, clap: str = DEFAULT_CLAP, device: str = "auto"):
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        from transformers import ClapModel, CLIPModel
        self.device = resolve_device(device)
        t0 = time.perf_counter()
        self.clip, self.clip_processor, self.clip_src = _load("CLIP", "--clip", clip, CLIPModel)
        self.clap, self.clap_processor, self.clap_src = _load("CLAP", "--clap", clap, ClapModel)
        self.clip.to(self.device)
        self.clap.to(self.device)
        self.load_seconds = time.perf_counter() - t0
        fe = self.clap_processor.feature_extractor
        self.rate = int(fe.sampling_rate)
        self.window_s = float(fe.nb_max_samples) / self.rate
        self.names = {"clip": clip, "clap": clap}
        self._torch = torch

    @property
    def video_dim(self) -> int:
        return int(self.clip.config.projection_dim)

    @property
    def audio_dim(self) -> int:
        return int(self.clap.config.projection_dim)

    def identity(self) -> dict:
        """What the features depend on, for the cache key: model names, configs and preprocessing."""
        h = hashlib.sha256()
        for m, p in ((self.clip, self.clip_processor), (self.clap, self.clap_processor)):
            h.update(m.config.to_json_string(use_diff=False).encode())
            h.update(json.dumps(p.to_dict(), sort_keys=True, default=str).encode())
        for src in (self.clip_src, self.clap_src):  # the weights files' sizes and times
            folder = Path(src) if Path(src).is_dir() else _hub_snapshot(src)
            if folder is not None:
                if not Path(src).is_dir():  # a hub model: its snapshot folder is named by its commit
                    h.update(folder.name.encode())
                for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
                    st = f.stat()
                    h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return {"clip": self.names["clip"], "clap": self.names["clap"], "config": h.hexdigest()[:16]}

    # -- embeddings -------------------------------------------------------------
    def images(self, frames: list[np.ndarray]) -> np.ndarray:
        """[n, Dv] L2-normalised CLIP image embeddings of RGB uint8 frames."""
        torch = self._torch
        x = self.clip_processor(images=list(frames), return_tensors="pt")
        with torch.inference_mode():
            y = _pooled(self.clip.get_image_features(pixel_values=x["pixel_values"].to(self.device)))
        return _normalise(y.float().cpu().numpy())

    def audios(self, clips: list[np.ndarray]) -> np.ndarray:
        """[n, Da] CLAP audio embeddings of mono float32 clips at ``self.rate``."""
        torch = self._torch
        fe = self.clap_processor.feature_extractor
        keep = int(fe.nb_max_samples)
        parts = []
        for c in clips:  # one clip at a time: features independent of the batch (see the module docstring)
            if len(c) > keep:  # centre crop, as ClipClap; never the extractor's random crop
                s = (len(c) - keep) // 2
                c = c[s : s + keep]
            parts.append(fe(np.ascontiguousarray(c, dtype=np.float32), sampling_rate=self.rate, return_tensors="pt"))
        inputs = {"input_features": torch.cat([p["input_features"] for p in parts]).to(self.device)}
        if "is_longer" in parts[0]:
            inputs["is_longer"] = torch.cat([p["is_longer"] for p in parts]).to(self.device)
        with torch.inference_mode():
            y = _pooled(self.clap.get_audio_features(**inputs))
        return _normalise(y.float().cpu().numpy())

    def _text(self, model, processor, prompts: list[str], batch: int = 256) -> np.ndarray:
        torch = self._torch
        out = []
        for i in range(0, len(prompts), batch):
            t = processor(text=prompts[i : i + batch], padding=True, truncation=True, return_tensors="pt")
            t = {k: v.to(self.device) for k, v in t.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                out.append(_pooled(model.get_text_features(**t)).float().cpu().numpy())
        return _normalise(np.concatenate(out))

    def class_embeddings(self, prompt_names: list[str], templates: str = "action") -> np.ndarray:
        """[C, Dclip + Dclap]: CLIP text ‖ CLAP text of each name, each the normalised mean over templates."""
        if templates not in TEMPLATES:
            raise DataError(f"--templates {templates}: expected one of {', '.join(TEMPLATES)}")
        parts = []
        for (model, processor), tmpl in zip(((self.clip, self.clip_processor), (self.clap, self.clap_processor)),
                                            TEMPLATES[templates]):
            prompts = [t.format(n) for n in prompt_names for t in tmpl]
            e = self._text(model, processor, prompts).reshape(len(prompt_names), len(tmpl), -1)
            parts.append(_normalise(e.mean(1)))
        return np.concatenate(parts, 1).astype(np.float32)


# ---------------------------------------------------------------------------
def save_tiny_models(folder: str | os.PathLike, seed: int = 0, audio_rate: int = 16000) -> tuple[Path, Path]:
    """Randomly initialised, tiny CLIP and CLAP models with their processors, saved as
    ``folder/clip`` and ``folder/clap`` (no download: the tokenizers' vocabularies are
    written here). For tests and benchmarks of the extraction code path; their
    features mean nothing.
    """
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # before the imports: no torchvision, a PIL image processor (and a warning)
    from transformers import (ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, CLIPConfig,
                              CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer, RobertaTokenizer)

    folder = Path(folder)
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,'-")
    clip_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        clip_vocab.setdefault(c, len(clip_vocab))
        clip_vocab.setdefault(c + "</w>", len(clip_vocab))
    clap_vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for c in chars + ["Ġ"] + [c.upper() for c in "abcdefghijklmnopqrstuvwxyz"]:
        clap_vocab.setdefault(c, len(clap_vocab))
    layer = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    torch.manual_seed(seed)
    clip = CLIPModel(CLIPConfig(
        text_config=dict(vocab_size=len(clip_vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1, **layer),
        vision_config=dict(image_size=32, patch_size=8, **layer),
        projection_dim=16,
    ))
    clip_proc = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=CLIPTokenizer(vocab=clip_vocab, merges=[]),
    )
    clap = ClapModel(ClapConfig(
        text_config=dict(vocab_size=len(clap_vocab), max_position_embeddings=80, pad_token_id=1, bos_token_id=0,
                         eos_token_id=2, type_vocab_size=1, **layer),
        audio_config=dict(num_mel_bins=16, spec_size=64, patch_size=4, patch_stride=(4, 4), hidden_size=32,
                          depths=[1, 1], num_attention_heads=[2, 2], window_size=4, patch_embeds_hidden_size=16,
                          projection_hidden_size=32, enable_fusion=False),
        projection_dim=24,
    ))
    clap_proc = ClapProcessor(
        # 1-s window at 16 kHz: 101 frames of 16 mel bins, within the tiny HTS-AT's input size
        feature_extractor=ClapFeatureExtractor(feature_size=16, sampling_rate=audio_rate, hop_length=audio_rate // 100,
                                               max_length_s=1, fft_window_size=400, frequency_max=audio_rate // 2,
                                               truncation="rand_trunc", padding="repeatpad"),
        tokenizer=RobertaTokenizer(vocab=clap_vocab, merges=[]),
    )
    for model, proc, name in ((clip, clip_proc, "clip"), (clap, clap_proc, "clap")):
        model.save_pretrained(folder / name)
        proc.save_pretrained(folder / name)
    return folder / "clip", folder / "clap"


def _hub_snapshot(name: str) -> Path | None:
    """The local snapshot folder of a Hugging Face hub model (named by its commit), or None.

    transformers 5 does not keep a config's commit hash, so the cache key reads it from here:
    a model re-downloaded at a new revision gets new features, never a mix with the old ones."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not a hub name, or not downloaded (then the model could not have loaded either)
        return None

