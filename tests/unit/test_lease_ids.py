"""Lease identities: advisory keys are stable 64-bit integers, holder ids are unique."""

from __future__ import annotations

import os
import socket

from tradepilot.core.lease import make_holder_id
from tradepilot.core.lease_backends import advisory_key


def test_advisory_key_is_stable_signed_64_bit_and_distinct() -> None:
    names = ["outbox-relay", "scheduler", "feed:binance", "matching:1", "matching:2"]
    keys = [advisory_key(n) for n in names]
    assert keys == [advisory_key(n) for n in names]  # same in every process
    assert len(set(keys)) == len(keys)
    assert all(-(2**63) <= k < 2**63 for k in keys)
    # Pinned: a change would let two versions of a rolling deploy both "hold" one lease.
    assert advisory_key("outbox-relay") == 3462121368804101961


def test_holder_id_names_host_and_process_and_is_unique() -> None:
    a, b = make_holder_id(), make_holder_id()
    assert a != b
    host, pid, rand = a.rsplit(":", 2)
    assert host == socket.gethostname()[:80] and pid == str(os.getpid()) and len(rand) == 12
    assert len(a) <= 128
