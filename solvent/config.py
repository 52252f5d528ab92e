"""Settings: every knob is a `SOLVENT_*` environment variable, read once by `get_settings()`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Operator settings. Each field is read from `SOLVENT_<NAME>` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="SOLVENT_", extra="ignore")

    # Where everything Solvent writes lives (database, models, images, keys).
    home: Path = Field(default_factory=lambda: Path.home() / ".solvent")
    # "auto" picks CUDA, then MPS, then CPU; or name a torch device ("cuda:1", "cpu").
    device: str = "auto"
    # "auto" = fp16 on CUDA/MPS (bf16 where asked), fp32 on CPU; or "fp32" | "fp16" | "bf16".
    dtype: str = "auto"
    # Memory budget for loaded pipelines (bytes); least recently used are evicted beyond it.
    model_cache_bytes: int = 8 * 1024**3
    # Largest image accepted as input (pixels); larger files are refused as decompression bombs.
    max_input_pixels: int = 4096 * 4096
    # Largest encoded image accepted (bytes).
    max_input_bytes: int = 32 * 1024 * 1024
    # Prompts are encoded in 75-token chunks (as AUTOMATIC1111 does); at most this many.
    max_prompt_chunks: int = 3
    # Largest batch one request may ask for.
    max_batch_size: int = 16
    # Never touch the network (also implied by HF_HUB_OFFLINE=1).
    offline: bool = False
    # Compile the UNet with torch.compile on CUDA (slow first call per shape).
    compile: bool = False
    # Large models on a small GPU (CUDA only; elsewhere ignored): "model" moves each component to the GPU
    # while it runs (diffusers' model CPU offload: a little slower, far less memory), "sequential" streams
    # weights layer by layer (slowest, least memory), "none" keeps the whole pipeline on the device.
    offload: Literal["none", "model", "sequential"] = "none"
    # Store the UNet's / transformer's weights in fp8 (float8_e4m3fn) and compute in the working dtype
    # (diffusers' layerwise casting): about half the memory of bf16 for a small loss of quality.
    fp8_weights: bool = False
    # Database: SQLite under SOLVENT_HOME by default, or any SQLAlchemy URL (postgresql+psycopg://…).
    database_url: str | None = None
    # Queue: a leased job must be renewed by a heartbeat within this many seconds.
    lease_seconds: int = 30
    # Attempts before a job whose worker keeps vanishing is failed.
    max_attempts: int = 3
    # Back-pressure: queued jobs allowed per organisation and in total (429 beyond).
    max_queued_per_org: int = 100
    max_queued_total: int = 10_000
    # Fairness: a job passed over this many times gains one priority level.
    aging_skips: int = 5
    # Credit pricing as JSON (see solvent/billing/pricing.py); unset = the documented defaults.
    pricing: str | None = None
    # GPU-hour grants are converted to credits at this rate (250 credits = $2.50 an hour).
    credits_per_gpu_hour: int = 250
    # Whether anyone may create an account from the studio's sign-in page (`POST /api/auth/signup`).
    allow_signup: bool = True
    # Plan of organisations created by sign-up or `solvent orgs create` without --plan.
    default_plan: str = "community"
    # Stripe webhook signing secret (whsec_…); unset = the webhook answers 404 and top-ups are manual.
    stripe_webhook_secret: str | None = None
    # What upscales an image asked for beyond its model's trained size (generated at the closest size the model
    # supports, then upscaled): "auto" (solvent-tiny: solvent-tiny-upscale; other models: the first upscaler the
    # operator installed, else Lanczos), "lanczos", or an upscaler's id.
    size_upscaler: str = "auto"
    # The upscaler an upscale request that names none (`auto`) gets — A1111's extras, Stability's upscale
    # endpoints: an upscaler's id, `lanczos`, or "auto" (the operator's first by id, else solvent-tiny-upscale, else
    # Lanczos).
    upscaler: str = "auto"
    # What a background removal keeps when the request names nothing (the prompt an installed segmenter looks for).
    subject_prompt: str = "the main subject in the foreground"
    # The model a request that names none gets (every API surface; the first served model when it is not served).
    default_model: str = "solvent-tiny"
    # Which model serves each Stability v2beta stable-image service (JSON object).
    stability_v2_models: dict[str, str] = {"core": "solvent-tiny", "sd3": "solvent-tiny", "ultra": "solvent-tiny"}
    # Stability v1 engine ids → installed models (ids not set here: Stability's own — stable-diffusion-v1-6,
    # stable-diffusion-xl-1024-v1-0, … — go to the first served model of their family, else the default model).
    stability_engines: dict[str, str] = {}
    # Stability's generate/sd3 `model` names → installed models (unset ones use the sd3 service's model).
    stability_sd3_models: dict[str, str] = {}
    # OpenAI model names → Solvent models (`default` serves requests that name none).
    # Exact names first, then the longest key a name starts with; other OpenAI image names get `default`.
    openai_models: dict[str, str] = {"default": "solvent-tiny", "dall-e": "solvent-tiny", "gpt-image": "solvent-tiny",
                                      "chatgpt-image": "solvent-tiny"}
    # The API key (by id, e.g. key_…) that AUTOMATIC1111 requests carrying no credentials act as (`/sdapi/`,
    # `/controlnet/`: LibreChat's SD tool sends none). Off by default: anyone who can reach the server then spends
    # that key's organisation's credits. Credential-less requests get at most generate and read.
    a1111_anonymous_key_id: str | None = None
    # Studio session cookies carry the Secure flag (browsers accept it on http://localhost too).
    cookie_secure: bool = True
    # Stripe signatures older than this many seconds are refused as replays.
    stripe_tolerance_seconds: int = 300

    # --- Exposure and defences (see the README's security section) ---
    # The address `solvent serve` binds; whether it is loopback decides the "auto" defaults below.
    host: str = "127.0.0.1"
    # Require a token for /metrics and /docs, /redoc, /openapi.json; None = yes unless bound to loopback.
    protect_docs: bool | None = None
    # The bearer token Prometheus sends for /metrics when protected (an operator API key also works).
    metrics_token: str | None = None
    # Sign-up's free plan allowance waits for a verified e-mail address; None = yes unless bound to loopback.
    require_email_verification: bool | None = None
    # Peers whose `X-Forwarded-For` names the real client (a reverse proxy or load balancer on these addresses).
    trusted_proxies: list[str] = ["127.0.0.1", "::1"]
    # Sign-ups allowed per client address per hour.
    signups_per_hour: int = 5
    # Outgoing mail (verification links): smtp://user:pass@host:587 (STARTTLS), smtps://…:465; unset = the log.
    smtp_url: str | None = None
    mail_from: str = "solvent@localhost"
    # Largest request body (bytes), enforced while it streams in, for every route (base64 images included).
    max_request_bytes: int = 48 * 1024 * 1024
    # Deepest JSON nesting and longest integer (digits) any JSON body may have.
    max_json_depth: int = 32
    max_json_int_digits: int = 18  # every JSON integer fits a signed 64-bit column
    # Synchronous waits (compat APIs) plus event streams one organisation may hold open at once.
    max_waits_per_org: int = 8
    # Outbound URLs (budget webhooks) may not reach loopback, link-local or private addresses unless the
    # host (or address) is in this list.
    outbound_allow_hosts: list[str] = []
    # Job webhooks: a failed delivery is tried again after this × 2^attempt seconds, at most this many times.
    webhook_backoff_seconds: float = 2.0
    webhook_attempts: int = 6
    # Input images of finished jobs are deleted after this many hours (0 = as soon as the job ends).
    input_retention_hours: int = 24
    # How often the server reaps expired leases and collects old inputs (seconds).
    housekeeping_seconds: int = 10

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    @property
    def docs_protected(self) -> bool:
        return (not self.loopback) if self.protect_docs is None else self.protect_docs

    @property
    def email_verification_required(self) -> bool:
        return (not self.loopback) if self.require_email_verification is None else self.require_email_verification

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def loras_dir(self) -> Path:
        return self.home / "loras"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'solvent.db'}"


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests call `get_settings.cache_clear()` after changing the env)."""
    return Settings()
