"""Tiny random-weight diffusion pipelines built from configs (no downloads), for tests and benchmarks.

Each builder seeds torch, builds the components of one diffusers pipeline at toy size, and saves the
pipeline with ``save_pretrained`` into a directory; tests then register that directory in a models
config file and load it back through the worker's real registry and loader. The CLIP tokenizer is
built from a vocabulary and merges file written here (the usual test tokenizers come from the Hub).
"""

from __future__ import annotations

import json
from pathlib import Path

TOKEN_LENGTH = 16  # tokenizer model_max_length (CLIP's is 77); the text encoder has as many positions
_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
_MERGES = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("s", "k"), ("sk", "y</w>")]


def write_tokenizer_files(folder: Path, max_length: int = TOKEN_LENGTH) -> Path:
    """A tiny CLIP BPE vocabulary: letters and digits, word-final variants and a few merges."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in _LETTERS:
            vocab[ch + suffix] = len(vocab)
    for a, b in _MERGES:
        vocab[a + b] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in _MERGES)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_length}))
    return folder


def tiny_tokenizer(scratch: Path, max_length: int = TOKEN_LENGTH):
    """A CLIPTokenizer loaded from the tiny vocabulary files written under ``scratch``."""
    from transformers import CLIPTokenizer

    folder = write_tokenizer_files(scratch / f"clip-vocab-{max_length}", max_length)
    return CLIPTokenizer.from_pretrained(folder)


def _text_encoder(hidden: int = 16):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=32,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=128,
        max_position_embeddings=TOKEN_LENGTH, layer_norm_eps=1e-5,
    )
    return CLIPTextModel(config).eval()


def _kl_vae(blocks: tuple[int, ...], scaling_factor: float = 0.18215):
    from diffusers import AutoencoderKL

    return AutoencoderKL(  # sample_size: the VAE's own tiling starts above it (kept out of the way)
        block_out_channels=list(blocks), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * len(blocks),
        up_block_types=["UpDecoderBlock2D"] * len(blocks),
        layers_per_block=1, norm_num_groups=4, sample_size=256, scaling_factor=scaling_factor,
    )


def build_tiny_refine(folder: Path, seed: int = 0) -> Path:
    """StableDiffusionImg2ImgPipeline: 2-level UNet with cross-attention, 2x VAE, 2-layer CLIP."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4,
    )
    pipe = StableDiffusionImg2ImgPipeline(
        vae=_kl_vae((8, 8)), text_encoder=_text_encoder(), tokenizer=tiny_tokenizer(folder.parent),
        unet=unet, scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_sd_upscaler(folder: Path, seed: int = 0) -> Path:
    """StableDiffusionUpscalePipeline: 7-channel UNet with noise-level class embeddings, 4x VAE."""
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=7, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4, num_class_embeds=400,
    )
    pipe = StableDiffusionUpscalePipeline(
        vae=_kl_vae((8, 8, 8), 0.08333), text_encoder=_text_encoder(),
        tokenizer=tiny_tokenizer(folder.parent),
        unet=unet, low_res_scheduler=DDPMScheduler(), max_noise_level=350,
        scheduler=DDIMScheduler(prediction_type="v_prediction", clip_sample=False, steps_offset=1),
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_ldm(folder: Path, seed: int = 0) -> Path:
    """LDMSuperResolutionPipeline: 6-channel UNet2DModel on the image grid, 4x VQ decoder."""
    import torch
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=16, in_channels=6, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4,
    )
    vqvae = VQModel(
        block_out_channels=[8, 8, 8], in_channels=3, out_channels=3, latent_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        layers_per_block=1, norm_num_groups=4, num_vq_embeddings=2,
    )
    scheduler = DDIMScheduler(clip_sample=False, steps_offset=1)
    LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler).save_pretrained(folder)
    return folder


TINY_MODELS = {  # name -> (builder, registry entry)
    "tiny-refine": (build_tiny_refine, {"pipeline": "StableDiffusionImg2ImgPipeline", "kind": "refine",
                                        "takes_prompt": True}),
    "tiny-sd-upscaler": (build_tiny_sd_upscaler, {"pipeline": "StableDiffusionUpscalePipeline",
                                                  "kind": "upscale", "takes_prompt": True}),
    "tiny-ldm": (build_tiny_ldm, {"pipeline": "LDMSuperResolutionPipeline", "kind": "upscale",
                                  "takes_prompt": False}),
}


def build_tiny_models(models_dir: Path) -> Path:
    """Build every tiny model under ``models_dir`` and write ``models.json`` registering them."""
    config = {}
    for name, (build, entry) in TINY_MODELS.items():
        build(models_dir / name)
        config[name] = {**entry, "path": name}
    path = models_dir / "models.json"
    path.write_text(json.dumps(config, indent=2))
    return path
