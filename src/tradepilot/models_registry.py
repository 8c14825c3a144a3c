"""Imports every domain's models so that Alembic and the tests see the whole schema."""

from tradepilot.core import outbox_models as _outbox  # noqa: F401
from tradepilot.core import idempotency_models as _idempotency  # noqa: F401
from tradepilot.core import lease_models as _lease  # noqa: F401
from tradepilot.alerts import models as _alerts  # noqa: F401
from tradepilot.core.db import Base
from tradepilot.identity import guard_models as _guard  # noqa: F401
from tradepilot.identity import models as _identity  # noqa: F401
from tradepilot.identity import twofactor_models as _twofactor  # noqa: F401
from tradepilot.jobs import models as _jobs  # noqa: F401
from tradepilot.market import models as _market  # noqa: F401
from tradepilot.notifications import models as _notifications  # noqa: F401
from tradepilot.notifications import sources as _notification_sources  # noqa: F401  (which events notify)
from tradepilot.ai import models as _ai  # noqa: F401
from tradepilot.ai import feed_models as _ai_feeds  # noqa: F401
from tradepilot.ai import llm_models as _ai_llm  # noqa: F401
from tradepilot.signals import models as _signals  # noqa: F401
from tradepilot.ops.config import models as _config  # noqa: F401
from tradepilot.ops.monitoring import models as _monitoring  # noqa: F401
from tradepilot.notifications import channel_models as _notification_channels  # noqa: F401
from tradepilot.portfolio import equity_models as _equity  # noqa: F401
from tradepilot.strategies import models as _strategies  # noqa: F401
from tradepilot.strategies.runs import models as _strategy_runs  # noqa: F401
from tradepilot.strategies.optimize import models as _strategy_optimizations  # noqa: F401
from tradepilot.trading import halt as _trading_halt  # noqa: F401
from tradepilot.trading import models as _trading  # noqa: F401
from tradepilot.trading import order_models as _orders  # noqa: F401
from tradepilot.trading import position_models as _position_exits  # noqa: F401
from tradepilot.trading.live import reconciliation_models as _live_reconciliation  # noqa: F401

metadata = Base.metadata
