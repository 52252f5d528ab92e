"""Plans, credit pricing, the credit ledger (reserve, capture, release), grants, limits, payment webhooks."""

from ..money import fmt_credits
from .admission import Billing, KeyCapReached, Payer, PlanLimit, QuotaExceeded, RateLimited
from .credits import CreditLedger
from .plans import DEFAULT_PLANS, PlanView, ensure_plans, list_plans, set_plan
from .pricing import PriceRequest, Pricing

__all__ = ["DEFAULT_PLANS", "Billing", "CreditLedger", "KeyCapReached", "Payer", "PlanLimit", "PlanView",
           "PriceRequest", "Pricing", "QuotaExceeded", "RateLimited", "ensure_plans", "fmt_credits", "list_plans",
           "set_plan"]
