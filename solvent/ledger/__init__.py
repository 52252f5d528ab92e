"""The compute ledger: what every GPU-second cost and earned.

- `catalog`: list prices (shipped `prices.json`), the operator's price versions and per-worker rates;
- `costing`: each finished job priced with its worker's rate (`record_job_cost_in`), uptime and idle cost;
- `reports` and `plots`: cost, revenue, margin, utilisation, idle and giveaways by period, provider, org…;
- `runway` and `scenario`: burn and runway from the recent trend, and what-ifs on it;
- `budgets`: soft alerts, hard caps and a runway floor, charged in the transaction that settles a job;
- `focus`: FOCUS 1.x cost-and-usage bills imported (in bounded memory) and Solvent's usage exported.
"""

from .budgets import Budgets
from .catalog import set_price, set_worker_rate
from .costing import cost_of, record_job_cost_in, worker_rate
from .reports import report
from .runway import from_ledger

__all__ = ["Budgets", "cost_of", "from_ledger", "record_job_cost_in", "report", "set_price", "set_worker_rate",
           "worker_rate"]
