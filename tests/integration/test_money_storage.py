"""Money is exact on SQLite (canonical text) and PostgreSQL (NUMERIC(36,18))."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text

from tradepilot.core.db import create_engine
from tradepilot.core.money import PrecisionLossError
from tradepilot.core.types import Money

VALUES = ["0.1", "1e-18", "12345678901.123456789012345678", "-0.000000000000000001", "999999999999999999"]


async def test_money_round_trip_is_exact(database_url: str) -> None:
    meta = MetaData()
    probe = Table("money_probe", meta, Column("id", Integer, primary_key=True), Column("amount", Money()))
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            await conn.execute(insert(probe), [{"id": i, "amount": Decimal(v)} for i, v in enumerate(VALUES)])
        async with engine.connect() as conn:
            rows = (await conn.execute(select(probe.c.amount).order_by(probe.c.id))).scalars().all()
            stored = (await conn.execute(text("SELECT amount FROM money_probe ORDER BY id"))).scalars().all()
        assert rows == [Decimal(v) for v in VALUES]
        assert all(isinstance(r, Decimal) for r in rows)
        if engine.dialect.name == "sqlite":
            # never REAL: the raw column holds the exact decimal text
            assert stored[2] == "12345678901.123456789012345678" and stored[1] == "0.000000000000000001"
        else:
            assert stored[2] == Decimal("12345678901.123456789012345678")
        async with engine.begin() as conn:
            with pytest.raises(Exception) as err:
                await conn.execute(insert(probe), [{"id": 99, "amount": Decimal("0.0000000000000000001")}])
            assert isinstance(err.value.__cause__ or err.value, (PrecisionLossError, Exception))
            assert "decimal places" in str(err.value)
        async with engine.begin() as conn:
            with pytest.raises(Exception) as err:
                await conn.execute(insert(probe), [{"id": 98, "amount": 0.1}])
            assert "float" in str(err.value)
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(meta.drop_all)
        await engine.dispose()
