"""Tables. Ids are unguessable (prefix + 128 random bits); times are timezone-aware UTC."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ..generation.spec import JobSpec
from .db import utcnow


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(16)}"


class UTCDateTime(TypeDecorator):
    """Stored as UTC; always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Solvent stores UTC-aware times only")
        return value.astimezone(UTC) if dialect.name != "sqlite" else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


FINAL_STATES = (JobState.succeeded, JobState.failed, JobState.canceled)


class Organisation(Base):
    __tablename__ = "organisations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("org"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When this organisation last had a job leased: the round-robin order between organisations.
    last_served_at: Mapped[datetime | None] = mapped_column(default=None)
    plan_id: Mapped[str] = mapped_column(String(40), default="community")
    # Start of the first paid period (a subscription's anchor); periods repeat from it.
    plan_anchor_at: Mapped[datetime | None] = mapped_column(default=None)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(100), default=None, index=True)
    # The platform operator's organisation: only here can an operator user or key act as operator.
    operator: Mapped[bool] = mapped_column(Boolean, default=False)
    # Created by sign-up while e-mail verification was required: no plan allowance until an owner verifies.
    needs_verification: Mapped[bool] = mapped_column(Boolean, default=False)
    # The HMAC key job webhooks are signed with (`whsec_…`). Kept readable: the server signs with it, and the
    # organisation's admins read it to verify (a signing key cannot be stored as a hash).
    webhook_secret: Mapped[str | None] = mapped_column(String(80), default=None)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(24), unique=True)  # shown in listings, never secret
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the whole key
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Caps of the key's own (None = only the plan's): like AI Horde's shared keys.
    credit_cap_mc: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cap_period: Mapped[str] = mapped_column(String(8), default="month")  # day | month
    max_pixels: Mapped[int | None] = mapped_column(Integer, default=None)
    max_steps: Mapped[int | None] = mapped_column(Integer, default=None)
    rpm: Mapped[int | None] = mapped_column(Integer, default=None)
    concurrent_jobs: Mapped[int | None] = mapped_column(Integer, default=None)
    rotated_from: Mapped[str | None] = mapped_column(String(40), default=None)
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)  # e.g. A1111's sd_model_checkpoint
    # The user who made it (the key acts with at most that user's role); None: the organisation's own
    # key, made by `solvent serve` or the CLI.
    created_by: Mapped[str | None] = mapped_column(String(40), default=None, index=True)


class Worker(Base):
    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("wrk"))
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)  # gpu model and count, or cpu
    provider: Mapped[str] = mapped_column(String(64), default="local")
    region: Mapped[str] = mapped_column(String(64), default="")
    instance_type: Mapped[str] = mapped_column(String(64), default="")
    models: Mapped[list[Any]] = mapped_column(default=list)  # models it can serve
    loaded: Mapped[list[Any]] = mapped_column(default=list)  # models it has loaded now
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    status: Mapped[str] = mapped_column(String(16), default="idle")
    # How the ledger prices this worker's time: on_demand | 1y | 3y | spot | capacity_block | onprem.
    commitment: Mapped[str] = mapped_column(String(16), default="on_demand")


class WorkerUptime(Base):
    """One stretch of time a worker was alive (consecutive heartbeats); busy or idle, it costs money."""

    __tablename__ = "worker_uptime"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(String(40), index=True)
    started_at: Mapped[datetime] = mapped_column()
    last_seen_at: Mapped[datetime] = mapped_column()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key", name="uq_jobs_org_idempotency"),
        Index("ix_jobs_queue", "state", "priority", "created_at"),
        Index("ix_jobs_org_state", "org_id", "state"),
        Index("ix_jobs_org_created", "org_id", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    api_key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    state: Mapped[str] = mapped_column(String(16), default=JobState.queued)
    mode: Mapped[str] = mapped_column(String(16), default="txt2img")
    model: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    skips: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker_id: Mapped[str | None] = mapped_column(String(40), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    preview: Mapped[str | None] = mapped_column(Text, default=None)  # latest step preview, base64 PNG
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The compute ledger's estimate held against hard budgets until the job is priced:
    # {"budgets": [ids], "micros": n}. Written with the job's own INSERT, so a hold costs no statement.
    budget_hold: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # When its input images were deleted under the retention setting (None: kept or none).
    inputs_collected_at: Mapped[datetime | None] = mapped_column(default=None)


    @property
    def spec(self) -> JobSpec:
        """The job's parameters, typed (`generation.spec.JobSpec`); read it instead of decoding `params`."""
        return JobSpec.from_params(self.params)

class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_images_job_index"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("img"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(BigInteger)
    blob: Mapped[str] = mapped_column(String(80))  # image-store key (sha256 of the PNG)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ----------------------------------------------------------------------------------------------
# Billing: plans, the credit ledger (append-only, double-entry), holds and grants.
# Credits are integer milli-credits (`_mc`); 1 credit = 1000 mc = $0.01 at list price.
# ----------------------------------------------------------------------------------------------


class Plan(Base):
    __tablename__ = "plans"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price_micros: Mapped[int | None] = mapped_column(BigInteger, default=None)  # per period; None = custom
    period: Mapped[str] = mapped_column(String(8), default="month")  # day | month
    included_mc: Mapped[int] = mapped_column(BigInteger, default=0)  # allowance per period
    daily_images: Mapped[int | None] = mapped_column(Integer, default=None)  # quota; None = none
    commercial: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    concurrent_jobs: Mapped[int] = mapped_column(Integer, default=1)
    rpm: Mapped[int] = mapped_column(Integer, default=10)
    max_pixels: Mapped[int] = mapped_column(BigInteger, default=1024 * 1024)
    max_steps: Mapped[int] = mapped_column(Integer, default=50)
    allowed_models: Mapped[list[Any] | None] = mapped_column(JSON, default=None)  # None = all
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditTxn(Base):
    """One balanced movement of credits; its idempotency key makes every retry harmless."""

    __tablename__ = "credit_txns"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("txn"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    amount_mc: Mapped[int] = mapped_column(BigInteger)  # the size of the movement (positive)
    job_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    grant_id: Mapped[str | None] = mapped_column(String(40), default=None)
    memo: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditEntry(Base):
    """One leg of a transaction. The legs of a transaction sum to zero; balances are sums of legs."""

    __tablename__ = "credit_entries"
    __table_args__ = (Index("ix_credit_entries_org_account", "org_id", "account"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    txn_id: Mapped[str] = mapped_column(ForeignKey("credit_txns.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str | None] = mapped_column(String(40), default=None)  # None: a system account
    account: Mapped[str] = mapped_column(String(80))
    amount_mc: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CreditBalance(Base):
    """An organisation account's balance: the sum of its legs, kept up to date by the transaction that posts
    them (reading a balance is one row, however long the history); `verify_balances` recomputes it."""

    __tablename__ = "credit_balances"
    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account: Mapped[str] = mapped_column(String(80), primary_key=True)
    balance_mc: Mapped[int] = mapped_column(BigInteger, default=0)


class CreditHold(Base):
    """Credits reserved for one job, by source account, until it is captured or released."""

    __tablename__ = "credit_holds"
    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    amount_mc: Mapped[int] = mapped_column(BigInteger)
    legs: Mapped[list[Any]] = mapped_column(default=list)  # [[source account, mc, destination], ...]
    period: Mapped[str] = mapped_column(String(32), default="")  # the allowance period it drew from
    state: Mapped[str] = mapped_column(String(12), default="held")  # held | captured | released
    captured_mc: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_by: Mapped[str] = mapped_column(String(16), default="")  # plan | paid | grant | free | mixed
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(default=None)


class Grant(Base):
    """Compute given away on purpose: credits with a start, an expiry, a purpose and an optional cap."""

    __tablename__ = "grants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("grt"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(Text, default="")
    amount_mc: Mapped[int] = mapped_column(BigInteger)
    daily_cap_mc: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Set when granted as GPU time: the GPU-hours (in milli-hours) converted at the operator's rate.
    gpu_millihours: Mapped[int | None] = mapped_column(BigInteger, default=None)
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """Payment-provider events already handled (a replayed event id changes nothing)."""

    __tablename__ = "webhook_events"
    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # provider:event id
    type: Mapped[str] = mapped_column(String(80))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


# ----------------------------------------------------------------------------------------------
# People: users, memberships, invitations, sessions, and the audit log.
# ----------------------------------------------------------------------------------------------


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("usr"))
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    operator: Mapped[bool] = mapped_column(Boolean, default=False)  # administers the platform
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    email_verified_at: Mapped[datetime | None] = mapped_column(default=None)


class Throttle(Base):
    """A counter for one client address, account or pair: failures (or sign-ups) and a back-off."""

    __tablename__ = "throttles"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(default=utcnow)
    blocked_until: Mapped[datetime | None] = mapped_column(default=None)


class EmailToken(Base):
    """A one-time token sent by e-mail (address verification); only its sha256 is stored."""

    __tablename__ = "email_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16), default="verify")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id", name="uq_memberships_org_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(12))  # owner | admin | member
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Invitation(Base):
    __tablename__ = "invitations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("inv"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(12))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class UserSession(Base):
    __tablename__ = "user_sessions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ses"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))  # the current org
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEvent(Base):
    """Who did what to which account object (append-only)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_org_at", "org_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))  # user:<id>, key:<id>, cli, stripe, system
    org_id: Mapped[str | None] = mapped_column(String(40), default=None)
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str] = mapped_column(String(120), default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


# ----------------------------------------------------------------------------------------------
# The compute ledger: versioned prices and what each job cost. Money is integer micro-dollars.
# ----------------------------------------------------------------------------------------------


class PriceVersion(Base):
    """An operator's price for an instance type and commitment (or one worker), from a moment on.

    Rows are only ever added: a new price starts a new version, so past costs never change.
    `provider = "worker"` rows price one worker (`instance_type` = its id) explicitly.
    """

    __tablename__ = "price_versions"
    __table_args__ = (Index("ix_price_versions_key", "provider", "instance_type", "commitment", "effective_from"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(64))
    instance_type: Mapped[str] = mapped_column(String(100))
    commitment: Mapped[str] = mapped_column(String(16), default="on_demand")
    gpus: Mapped[int] = mapped_column(Integer, default=1)
    micros_per_hour: Mapped[int] = mapped_column(BigInteger)  # per instance
    source: Mapped[str] = mapped_column(Text, default="")
    effective_from: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100), default="cli")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobCost(Base):
    """What one finished job cost (device time × its worker's rate) and what it brought in."""

    __tablename__ = "job_costs"
    __table_args__ = (Index("ix_job_costs_finished", "finished_at"),)
    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(40), index=True)
    worker_id: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    provider: Mapped[str] = mapped_column(String(64), default="")
    instance_type: Mapped[str] = mapped_column(String(100), default="")
    commitment: Mapped[str] = mapped_column(String(16), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    plan_id: Mapped[str] = mapped_column(String(40), default="")
    state: Mapped[str] = mapped_column(String(16), default="")
    paid_by: Mapped[str] = mapped_column(String(16), default="")  # plan | paid | grant | free | mixed | ""
    grant_ids: Mapped[list[Any]] = mapped_column(default=list)
    images: Mapped[int] = mapped_column(Integer, default=0)
    device_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    rate_micros_per_hour: Mapped[int] = mapped_column(BigInteger, default=0)  # effective, what the operator pays
    list_rate_micros_per_hour: Mapped[int] = mapped_column(BigInteger, default=0)  # on-demand list price
    rate_source: Mapped[str] = mapped_column(String(200), default="")  # "" = unpriced
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    list_cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_mc: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    given_away_mc: Mapped[int] = mapped_column(BigInteger, default=0)  # captured from grants and free allowances
    batch_id: Mapped[str] = mapped_column(String(40), default="", server_default="")  # the device call it shared
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)


class Finances(Base):
    """What the operator tells the ledger about money outside it, as of a moment (rows only added)."""

    __tablename__ = "finances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    as_of: Mapped[datetime] = mapped_column(default=utcnow)
    cash_micros: Mapped[int] = mapped_column(BigInteger)
    payroll_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # per month
    rent_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # per month
    other_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # per month
    committed_cloud_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # per month, owed used or not
    actor: Mapped[str] = mapped_column(String(100), default="cli")


class Budget(Base):
    """A spending limit on compute cost for a scope and period, with alert thresholds and an optional hard cap.

    scope: `all`, `free` (the free tier), `plan:<id>`, `org:<id>` or `grant:<id>`. A `runway_floor_bp`
    budget instead pauses its scope while the runway is below that many hundredths of a month.
    """

    __tablename__ = "budgets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("bud"))
    name: Mapped[str] = mapped_column(String(200), default="")
    scope: Mapped[str] = mapped_column(String(80))
    period: Mapped[str] = mapped_column(String(8), default="month")  # day | month
    limit_micros: Mapped[int | None] = mapped_column(BigInteger, default=None)
    thresholds_bp: Mapped[list[Any]] = mapped_column(default=list)  # soft alerts, e.g. [8000, 10000]
    hard: Mapped[bool] = mapped_column(Boolean, default=False)  # refuse the scope's jobs at the limit
    runway_floor_cm: Mapped[int | None] = mapped_column(Integer, default=None)  # hundredths of a month
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    reserved_micros: Mapped[int] = mapped_column(BigInteger, default=0)  # estimates of its queued/running jobs
    # The priced spend of period `period_key` as a running sum, so admission and settlement read and
    # write this one row (a later period starts from zero when its first job is priced).
    period_key: Mapped[str] = mapped_column(String(16), default="")
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BudgetAlert(Base):
    """A threshold crossed in one period (once per budget, period and threshold)."""

    __tablename__ = "budget_alerts"
    __table_args__ = (UniqueConstraint("budget_id", "period_key", "threshold_bp", name="uq_budget_alert"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    budget_id: Mapped[str] = mapped_column(String(40), index=True)
    period_key: Mapped[str] = mapped_column(String(16))
    threshold_bp: Mapped[int] = mapped_column(Integer)
    spent_micros: Mapped[int] = mapped_column(BigInteger)
    limit_micros: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered: Mapped[str] = mapped_column(String(200), default="")  # "", "logged", webhook status


class WebhookDelivery(Base):
    """One job's "it ended" POST to its `webhook_url`: written in the transaction that ends the job (nothing is
    lost on a crash), retried with back-off until the receiver answers 2xx or the attempts run out. Its id is
    the event's: the same on every retry, so a receiver can drop a repeat."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evt"))
    job_id: Mapped[str] = mapped_column(String(40), unique=True)
    org_id: Mapped[str] = mapped_column(String(40), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    event: Mapped[str] = mapped_column(String(40))  # job.succeeded | job.failed | job.canceled
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    log: Mapped[list[Any]] = mapped_column(default=list)  # each attempt: at, status or error, seconds


class BillImport(Base):
    """One imported FOCUS cost-and-usage file (its sha256 makes a re-import a no-op)."""

    __tablename__ = "bill_imports"
    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("imp"))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(Text, default="")
    providers: Mapped[list[Any]] = mapped_column(default=list)
    period_start: Mapped[datetime] = mapped_column()
    period_end: Mapped[datetime] = mapped_column()
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(8), default="USD")
    billed_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    effective_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)


class BillLine(Base):
    """A FOCUS file's cost summed per provider, resource, day, charge category and commitment status."""

    __tablename__ = "bill_lines"
    __table_args__ = (Index("ix_bill_lines_provider_day", "provider", "day"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    import_id: Mapped[str] = mapped_column(ForeignKey("bill_imports.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(100))
    resource_id: Mapped[str] = mapped_column(Text, default="")
    day: Mapped[datetime] = mapped_column()
    charge_category: Mapped[str] = mapped_column(String(32), default="Usage")
    commitment_status: Mapped[str] = mapped_column(String(16), default="")
    rows: Mapped[int] = mapped_column(Integer, default=0)
    billed_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    effective_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    list_micros: Mapped[int] = mapped_column(BigInteger, default=0)
