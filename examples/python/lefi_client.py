#!/usr/bin/env python3
"""A small, complete lefi party client in Python (grpcio): subscribe, receive deliveries, keep a copy.

It does what every lefi consumer has to do, following the client's contract on
`lefi.v1.DeliveryService` in proto/lefi/v1/delivery.proto (the numbers (1)-(12) below refer to it):

- connects with mutual TLS: the party's client certificate and key, the agency's CA, and the server
  name the server's certificate is valid for;
- places subscriptions (`SubscriptionService.CreateSubscriptions`), idempotent by the
  client_reference of each item, so a batch that timed out is simply sent again;
- receives deliveries over either transport, `--transport stream` (`DeliveryService.Stream`, one
  long-lived call) or `--transport pull` (`DeliveryService.FetchEvents`, unary calls with a long
  poll); both carry the same events and the same cursors;
- applies them to its own SQLite database: records keyed by (subscription, record_id) and applied
  by version (NEW inserts, CORRECTION replaces, RETRACTION removes); a snapshot replaces everything
  held for its subscription at SnapshotEnd; notices update the subscriptions table;
- stores the cursor IN THE SAME TRANSACTION as the data applied from the event (2), heartbeat
  cursors too, as bookmarks (7); so a crash at any point loses nothing and repeats nothing, and a
  restart resumes from the stored cursor;
- checks every subscription's event_number for gaps (6);
- reacts to every error as the contract says: CURSOR_EXPIRED -> RequestFullRefresh and go on from
  its cursor (9); UNAVAILABLE (SERVER_SHUTTING_DOWN, UNAVAILABLE_STORAGE, a lost connection) and
  INTERNAL -> reconnect with backoff and jitter and resume (10); UNAUTHENTICATED / PERMISSION_DENIED
  (CERTIFICATE_REVOKED, PARTY_TERMINATED, AGREEMENT_NOT_IN_FORCE, ...) -> stop with a clear message
  and a non-zero exit status. The reason is read from the google.rpc.ErrorInfo in the status
  details (the `grpc-status-details-bin` trailer).

Commands (see --help of each):

    lefi_client.py subscribe --file subscriptions.jsonl      # or --reference/--person/... for one
    lefi_client.py run --transport stream                     # or pull; runs until stopped
    lefi_client.py run --transport pull --until-caught-up     # exits 0 once at the register's head
    lefi_client.py status                                     # what the local database holds

It prints subscription ids, never personal identity numbers. The stubs are generated from proto/ at
start (generate.py), into a cache directory that is not committed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field

import grpc
from google.protobuf import duration_pb2, json_format
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

import generate

log = logging.getLogger("lefi-client")

# Exit statuses.
EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own
EXIT_REFUSED = 3  # UNAUTHENTICATED / PERMISSION_DENIED: fix the certificate or the agreement first
EXIT_ERROR = 4  # another error that retrying cannot fix (INVALID_ARGUMENT, CURSOR_INVALID, ...)
EXIT_REJECTED = 5  # subscribe: at least one item was rejected
EXIT_CRASHED = 75  # --crash-after: the simulated crash

# The generated modules, loaded by load_stubs() (after the arguments are parsed).
common_pb2 = delivery_pb2 = delivery_pb2_grpc = errors_pb2 = subscriptions_pb2 = subscriptions_pb2_grpc = None


def load_stubs(proto_dir: str, stubs_dir: str) -> None:
    """Generates (if needed) and imports the lefi.v1 stubs."""
    global common_pb2, delivery_pb2, delivery_pb2_grpc, errors_pb2, subscriptions_pb2, subscriptions_pb2_grpc
    sys.path.insert(0, generate.ensure_stubs(proto_dir, stubs_dir))
    from lefi.v1 import common_pb2, delivery_pb2, delivery_pb2_grpc, errors_pb2  # noqa: F811
    from lefi.v1 import subscriptions_pb2, subscriptions_pb2_grpc  # noqa: F811


# ---------------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------------


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def open_channel(args) -> grpc.Channel:
    """An mTLS channel: our certificate and key as the client identity, the agency's CA as the only
    trusted root, and the name the server's certificate must carry (which may differ from the
    address we dial, e.g. 127.0.0.1 vs localhost)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_file(args.ca),
        private_key=read_file(args.key),
        certificate_chain=read_file(args.cert),
    )
    options = [
        ("grpc.ssl_target_name_override", args.server_name),
        # HTTP/2 keepalive (7): a connection that died silently is noticed even on an idle stream.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Answers stay well under 4 MiB (FetchEvents: about 3 MiB); leave room anyway.
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]
    return grpc.secure_channel(args.addr, credentials, options)


def duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1_000_000_000))
    return d


# ---------------------------------------------------------------------------------------------
# Errors: the reason is in google.rpc.ErrorInfo, in the status details
# ---------------------------------------------------------------------------------------------


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    """The ErrorInfo lefi puts in every error's details, or None (a connection failure, or an error
    made by the client library itself, has none)."""
    status = None
    try:
        status = rpc_status.from_call(err)
    except ValueError:
        # from_call insists that the trailer's code and message equal the call's; read it directly.
        for key, value in (err.trailing_metadata() or ()):
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
    except AttributeError:  # not a call (no trailing metadata)
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def describe(err: grpc.RpcError) -> str:
    info = error_info(err)
    reason = info.reason if info else "no ErrorInfo"
    text = f"{err.code().name} {reason}: {err.details()}"
    if info and info.metadata.get("request_id"):
        text += f" (request_id {info.metadata['request_id']}; quote it to the agency)"
    if info is None and err.code() == grpc.StatusCode.UNAVAILABLE:
        # No answer from lefi at all: the server is down or unreachable, or the TLS handshake failed
        # (a certificate the server does not accept fails there, before gRPC runs; errors.proto).
        text += " (if this persists: check --addr, --server-name, and the certificate, its CA and its dates)"
    return text


# What to tell the operator of this client when the server refuses it: retrying will not help.
REFUSAL_ADVICE = {
    "CERTIFICATE_REQUIRED": "the call came without a client certificate: check --cert and --key",
    "CERTIFICATE_NOT_REGISTERED": "this certificate is not registered to a connected party: use the "
    "certificate the agency registered for your organisation",
    "CERTIFICATE_REVOKED": "the agency revoked this certificate: switch to another registered "
    "certificate; do not retry with this one",
    "PARTY_NOT_ACTIVE": "your party is not connected: contact the agency",
    "PARTY_TERMINATED": "your party's termination has taken effect and every subscription has "
    "ended: stop calling (a new connection needs a new application)",
    "AGREEMENT_NOT_IN_FORCE": "your agreement is not in force yet: retry on or after its valid_from "
    "date ({valid_from})",
}


class Stop(Exception):
    """Stop the client with this exit status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Retry(Exception):
    """Try again after `delay` seconds (None: the next backoff step)."""

    def __init__(self, why: str, delay: float | None = None):
        super().__init__(why)
        self.delay = delay


class Refresh(Exception):
    """The cursor expired: request a full refresh and continue from its cursor."""


def classify(err: grpc.RpcError) -> Exception:
    """What to do about a failed call, per the contract ((9), (10) and errors.proto)."""
    code = err.code()
    info = error_info(err)
    reason = info.reason if info else ""
    metadata = dict(info.metadata) if info else {}
    if reason == "CURSOR_EXPIRED":
        return Refresh(describe(err))
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        advice = REFUSAL_ADVICE.get(reason, "the reason says what to fix; do not retry blindly")
        advice = advice.format(valid_from=metadata.get("valid_from", "see the agreement"))
        return Stop(EXIT_REFUSED, f"the server refused this client: {describe(err)}\n  -> {advice}")
    if reason == "SERVER_SHUTTING_DOWN":
        # Another instance answers at once: come back soon, with a little jitter so that all the
        # clients cut off by the same restart do not arrive at the same instant.
        return Retry(describe(err), random.uniform(0.2, 2.0))
    if reason in ("TOO_MANY_STREAMS", "RATE_LIMITED"):
        after = metadata.get("retry_after_seconds")
        return Retry(describe(err), float(after) if after else None)
    if code in (
        grpc.StatusCode.UNAVAILABLE,  # UNAVAILABLE_STORAGE, or the connection failed or dropped
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,  # a proxy or the server reset the call
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
    ):
        return Retry(describe(err))
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return Stop(EXIT_ERROR, f"the server does not implement this call: {describe(err)}")
    # INVALID_ARGUMENT (CURSOR_INVALID, a bad field), NOT_FOUND, ...: retrying cannot fix it.
    return Stop(EXIT_ERROR, f"the call failed: {describe(err)}")


class Backoff:
    """Exponential backoff with jitter: 1 s doubling up to 60 s, each wait times 0.8-1.2."""

    def __init__(self, first: float = 1.0, cap: float = 60.0):
        self.first, self.cap, self.current = first, cap, first

    def next_delay(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.cap, self.current * 2)
        return delay

    def reset(self) -> None:
        self.current = self.first


def call_unary(method, request, backoff: Backoff | None = None, timeout: float = 30.0):
    """A unary call, retried while the error is one to retry (every lefi mutation is idempotent by
    its key, so resending is safe)."""
    backoff = backoff or Backoff()
    while True:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as err:
            action = classify(err)
            if not isinstance(action, Retry):
                raise action from None
            delay = action.delay if action.delay is not None else backoff.next_delay()
            log.warning("%s; retrying in %.1f s", action, delay)
            time.sleep(delay)


# ---------------------------------------------------------------------------------------------
# The local database
# ---------------------------------------------------------------------------------------------

SCHEMA = """
-- Where to resume: the cursor after the last event applied. One row.
CREATE TABLE IF NOT EXISTS delivery_position (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    cursor      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- Our subscriptions, as the stream last told us.
CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id     TEXT PRIMARY KEY,
    client_reference    TEXT,
    state               TEXT NOT NULL DEFAULT 'ACTIVE',   -- ACTIVE, SUSPENDED, ENDED
    state_reason        TEXT,
    state_message       TEXT,
    last_event_number   INTEGER,     -- for gap detection (6); NULL before the first event
    snapshot_as_of      INTEGER,     -- register sequence of the last complete snapshot
    person_id           TEXT,        -- the person (our own data: kept here, never printed)
    person_name         TEXT,
    protected_identity  INTEGER,
    date_of_death       TEXT,
    updated_at          TEXT
);
-- The records, one row per (subscription, record_id): the highest version we were sent. A
-- RETRACTION stays as a tombstone row (kind = 'RETRACTION') so that an older version can never
-- come back; live_records leaves tombstones out.
CREATE TABLE IF NOT EXISTS records (
    subscription_id    TEXT NOT NULL,
    record_id          TEXT NOT NULL,
    version            INTEGER NOT NULL,
    kind               TEXT NOT NULL,    -- NEW, CORRECTION, RETRACTION
    benefit_type       TEXT NOT NULL,
    fact               TEXT,             -- case, compensation_period, decision, payment, person_event
    valid_from         TEXT,
    valid_to           TEXT,
    retroactive        INTEGER NOT NULL,
    register_sequence  INTEGER NOT NULL,
    record             BLOB NOT NULL,    -- the lefi.v1.BenefitRecord, protobuf-encoded
    record_json        TEXT NOT NULL,    -- the same in the protobuf JSON mapping, for people
    PRIMARY KEY (subscription_id, record_id)
);
CREATE VIEW IF NOT EXISTS live_records AS SELECT * FROM records WHERE kind <> 'RETRACTION';
-- A snapshot in progress (5): its number and batches so far, and the record_ids it has sent, so
-- that SnapshotEnd can delete the rest; kept in the database because a snapshot may span a
-- restart (its remaining batches follow the cursor of the last batch applied).
CREATE TABLE IF NOT EXISTS snapshot_progress (
    subscription_id  TEXT PRIMARY KEY,
    event_number     INTEGER NOT NULL,
    batches          INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_seen (
    subscription_id  TEXT NOT NULL,
    record_id        TEXT NOT NULL,
    PRIMARY KEY (subscription_id, record_id)
);
"""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def enum_name(enum, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


class Store:
    """The client's SQLite database. Every change goes through transaction()."""

    def __init__(self, path: str):
        # isolation_level=None: we issue BEGIN and COMMIT ourselves.
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.executescript(SCHEMA)

    @contextlib.contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def cursor(self) -> str:
        row = self.db.execute("SELECT cursor FROM delivery_position WHERE id = 1").fetchone()
        return row[0] if row else ""

    def set_cursor(self, cursor: str) -> None:
        self.db.execute(
            "INSERT INTO delivery_position (id, cursor, updated_at) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            (cursor, now()),
        )

    def known_subscription(self, subscription) -> None:
        """Records a subscription we placed or listed (state as the server reports it now)."""
        self.db.execute(
            "INSERT INTO subscriptions (subscription_id, client_reference, state, state_reason, "
            "person_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (subscription_id) DO UPDATE SET client_reference = excluded.client_reference, "
            "state = excluded.state, state_reason = excluded.state_reason, updated_at = excluded.updated_at",
            (
                subscription.subscription_id,
                subscription.client_reference,
                enum_name(subscriptions_pb2.SubscriptionState, subscription.state),
                enum_name(subscriptions_pb2.SubscriptionStateReason, subscription.state_reason)
                if subscription.state_reason
                else None,
                subscription.person_id,
                now(),
            ),
        )

    def last_event_number(self, subscription_id: str) -> int | None:
        row = self.db.execute(
            "SELECT last_event_number FROM subscriptions WHERE subscription_id = ?", (subscription_id,)
        ).fetchone()
        return row[0] if row else None

    def set_last_event_number(self, subscription_id: str, number: int) -> None:
        self.db.execute(
            "INSERT INTO subscriptions (subscription_id, last_event_number, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (subscription_id) DO UPDATE SET last_event_number = excluded.last_event_number, "
            "updated_at = excluded.updated_at",
            (subscription_id, number, now()),
        )

    def set_person(self, subscription_id: str, person) -> None:
        self.db.execute(
            "UPDATE subscriptions SET person_id = ?, person_name = ?, protected_identity = ?, "
            "date_of_death = ? WHERE subscription_id = ?",
            (person.person_id, person.name, int(person.protected_identity), person.date_of_death, subscription_id),
        )


# ---------------------------------------------------------------------------------------------
# Applying events
# ---------------------------------------------------------------------------------------------


class Gap(Exception):
    """An event_number other than previous + 1 (6): something was missed."""

    def __init__(self, subscription_id: str, expected: int, got: int):
        super().__init__(f"subscription {subscription_id}: expected event {expected}, got {got}")
        self.subscription_id, self.expected, self.got = subscription_id, expected, got


@dataclass
class Stats:
    messages: int = 0
    heartbeats: int = 0
    snapshots: int = 0
    changes: int = 0
    notices: int = 0
    records_written: int = 0
    records_removed: int = 0
    duplicates_skipped: int = 0
    reconnects: int = 0
    full_refreshes: int = 0
    resumed_from_cursor: bool = False
    caught_up: bool = False


@dataclass
class Applier:
    """Applies one StreamEvent inside the caller's transaction. Raises Gap (the caller rolls back
    and resumes from the stored cursor). Subscriptions whose snapshot did not add up are collected
    in `needs_refresh`, to be refreshed after the commit."""

    store: Store
    stats: Stats
    needs_refresh: set = field(default_factory=set)

    def apply(self, event) -> None:
        kind = event.WhichOneof("event")
        self.stats.messages += 1
        if kind == "heartbeat":
            self.stats.heartbeats += 1  # nothing to apply: its cursor is a bookmark (7)
        elif kind == "snapshot_begin":
            self.snapshot_begin(event.snapshot_begin)
        elif kind == "records":
            self.snapshot_records(event.records)
        elif kind == "snapshot_end":
            self.snapshot_end(event.snapshot_end)
        elif kind == "change":
            self.change(event.change)
        elif kind == "notice":
            self.notice(event.notice)
        else:
            # A newer server may send an event this client does not know: skip it, keep its cursor.
            log.warning("skipping an event of unknown kind %r", kind)

    def next_in_order(self, subscription_id: str, number: int) -> bool:
        """True to apply an event with this number, False to skip a repeat; Gap for a gap (6)."""
        last = self.store.last_event_number(subscription_id)
        if last is None or number == last + 1:
            return True
        if number <= last:
            # Only possible after resuming from a cursor older than what we applied; harmless.
            self.stats.duplicates_skipped += 1
            return False
        raise Gap(subscription_id, last + 1, number)

    # -- snapshots (5) ----------------------------------------------------------------------------

    def snapshot_begin(self, begin) -> None:
        sub = begin.subscription_id
        last = self.store.last_event_number(sub)
        reason = begin.reason
        # A snapshot replaces everything held for the subscription, so a gap before it costs
        # nothing: take it whenever its number is new. A stream-start snapshot (4) stands in for all
        # earlier events and carries the number of the latest one, which we may already hold.
        if last is not None and begin.event_number <= last and reason != delivery_pb2.STREAM_START:
            self.stats.duplicates_skipped += 1
            return
        db = self.store.db
        db.execute("DELETE FROM snapshot_seen WHERE subscription_id = ?", (sub,))
        db.execute(
            "INSERT OR REPLACE INTO snapshot_progress (subscription_id, event_number, batches) VALUES (?, ?, 0)",
            (sub, begin.event_number),
        )
        self.store.set_last_event_number(sub, begin.event_number)
        self.store.set_person(sub, begin.person)
        log.info(
            "snapshot of %s begins (event %d, %s, as of sequence %d)",
            sub,
            begin.event_number,
            enum_name(delivery_pb2.SnapshotReason, reason),
            begin.as_of_sequence,
        )

    def in_snapshot(self, sub: str, number: int) -> int | None:
        """The number of batches so far of the snapshot this message belongs to, or None to skip
        a repeat; Gap when the snapshot's beginning was missed."""
        row = self.store.db.execute(
            "SELECT event_number, batches FROM snapshot_progress WHERE subscription_id = ?", (sub,)
        ).fetchone()
        if row and row[0] == number:
            return row[1]
        last = self.store.last_event_number(sub)
        if last is not None and number <= last:
            self.stats.duplicates_skipped += 1
            return None
        raise Gap(sub, (last or 0) + 1, number)

    def snapshot_records(self, batch) -> None:
        sub = batch.subscription_id
        batches = self.in_snapshot(sub, batch.event_number)
        if batches is None:
            return
        if batch.batch_index != batches + 1:
            log.warning("snapshot of %s: batch %d after batch %d", sub, batch.batch_index, batches)
        for record in batch.records:
            # Snapshot records are the latest version of each fact: they replace what we hold.
            self.write_record(sub, record)
            self.store.db.execute(
                "INSERT OR IGNORE INTO snapshot_seen (subscription_id, record_id) VALUES (?, ?)",
                (sub, record.record_id),
            )
        self.store.db.execute(
            "UPDATE snapshot_progress SET batches = ? WHERE subscription_id = ?", (batch.batch_index, sub)
        )

    def snapshot_end(self, end) -> None:
        sub = end.subscription_id
        if self.in_snapshot(sub, end.event_number) is None:
            return
        db = self.store.db
        (seen,) = db.execute("SELECT count(*) FROM snapshot_seen WHERE subscription_id = ?", (sub,)).fetchone()
        # Whatever the snapshot did not contain is no longer there (retracted, or out of scope).
        removed = db.execute(
            "DELETE FROM records WHERE subscription_id = ? AND record_id NOT IN "
            "(SELECT record_id FROM snapshot_seen WHERE subscription_id = ?)",
            (sub, sub),
        ).rowcount
        self.stats.records_removed += removed
        db.execute("DELETE FROM snapshot_seen WHERE subscription_id = ?", (sub,))
        db.execute("DELETE FROM snapshot_progress WHERE subscription_id = ?", (sub,))
        db.execute(
            "UPDATE subscriptions SET snapshot_as_of = ?, state = 'ACTIVE', updated_at = ? WHERE subscription_id = ?",
            (end.as_of_sequence, now(), sub),
        )
        self.stats.snapshots += 1
        if seen != end.record_count:
            log.error(
                "snapshot of %s: received %d records, the server counted %d; requesting a full refresh",
                sub,
                seen,
                end.record_count,
            )
            self.needs_refresh.add(sub)
        log.info("snapshot of %s complete: %d records", sub, seen)

    # -- changes ----------------------------------------------------------------------------------

    def change(self, change) -> None:
        sub = change.subscription_id
        if not self.next_in_order(sub, change.event_number):
            return
        self.store.set_last_event_number(sub, change.event_number)
        self.store.set_person(sub, change.person)  # a change without records: only the person changed
        for record in change.records:
            held = self.store.db.execute(
                "SELECT version FROM records WHERE subscription_id = ? AND record_id = ?", (sub, record.record_id)
            ).fetchone()
            if held is not None and record.version <= held[0]:
                self.stats.duplicates_skipped += 1  # versions only grow: an older one is stale
                continue
            # NEW inserts, CORRECTION replaces, RETRACTION removes (kept as a tombstone).
            self.write_record(sub, record)
            if record.kind == common_pb2.RETRACTION:
                self.stats.records_removed += 1
        self.stats.changes += 1
        log.info("change %d for %s: %d record(s)", change.event_number, sub, len(change.records))

    def write_record(self, sub: str, record) -> None:
        self.store.db.execute(
            "INSERT OR REPLACE INTO records (subscription_id, record_id, version, kind, benefit_type, fact, "
            "valid_from, valid_to, retroactive, register_sequence, record, record_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sub,
                record.record_id,
                record.version,
                enum_name(common_pb2.RecordKind, record.kind),
                record.benefit_type,
                record.WhichOneof("fact"),
                getattr(record.valid, "from"),  # `from` is a Python keyword
                record.valid.to,
                int(record.retroactive),
                record.register_sequence,
                record.SerializeToString(),
                json_format.MessageToJson(record, indent=None, sort_keys=True),
            ),
        )
        self.stats.records_written += 1

    # -- notices (8) ------------------------------------------------------------------------------

    def notice(self, notice) -> None:
        sub = notice.subscription_id
        # (A SUSPENDED notice at stream start carries the latest number, like a stream-start
        # snapshot; it only comes with an empty cursor, before we hold any number for it.)
        if not self.next_in_order(sub, notice.event_number):
            return
        state = enum_name(subscriptions_pb2.SubscriptionState, notice.state)
        reason = enum_name(subscriptions_pb2.SubscriptionStateReason, notice.reason)
        self.store.set_last_event_number(sub, notice.event_number)
        self.store.db.execute(
            "UPDATE subscriptions SET state = ?, state_reason = ?, state_message = ?, updated_at = ? "
            "WHERE subscription_id = ?",
            (state, reason, notice.message, now(), sub),
        )
        # What to do with data already received when a subscription ends is governed by the
        # agreement and the law; this example keeps it, marked with the subscription's state.
        self.stats.notices += 1
        log.info("subscription %s is now %s (%s)", sub, state, reason)


# ---------------------------------------------------------------------------------------------
# Receiving: the two transports
# ---------------------------------------------------------------------------------------------


class Silence:
    """Cancels a stream when nothing arrived for `limit` seconds (three heartbeat intervals, (7)):
    the connection is then presumed dead, and the client resumes from its cursor."""

    def __init__(self, call, limit: float):
        self.call, self.limit = call, limit
        self.last = time.monotonic()
        self.fired = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def touch(self) -> None:
        self.last = time.monotonic()

    def watch(self) -> None:
        while not self.stopped.wait(min(1.0, self.limit / 4)):
            if time.monotonic() - self.last > self.limit:
                self.fired = True
                self.call.cancel()
                return

    def stop(self) -> None:
        self.stopped.set()


class Receiver:
    """Receives and applies deliveries until stopped (or, with --until-caught-up, until at the head)."""

    def __init__(self, args, channel: grpc.Channel, store: Store):
        self.args, self.store = args, store
        self.delivery = delivery_pb2_grpc.DeliveryServiceStub(channel)
        self.subscriptions = subscriptions_pb2_grpc.SubscriptionServiceStub(channel)
        self.stats = Stats(resumed_from_cursor=bool(store.cursor()))
        self.applier = Applier(store, self.stats)
        self.backoff = Backoff()
        self.gaps_seen: set[tuple[str, int]] = set()
        self.applied_events = 0  # for --crash-after

    def run(self) -> int:
        receive = self.stream_once if self.args.transport == "stream" else self.pull_once
        while True:
            try:
                if receive():
                    self.stats.caught_up = True
                    return EXIT_OK
            except Gap as gap:
                self.on_gap(gap)
            except Refresh as why:
                log.warning("%s: requesting a full refresh", why)
                self.full_refresh([], "cursor expired")
            except Retry as why:
                delay = why.delay if why.delay is not None else self.backoff.next_delay()
                self.stats.reconnects += 1
                log.warning("%s; resuming from the stored cursor in %.1f s", why, delay)
                time.sleep(delay)

    def commit_point(self) -> None:
        """Called inside the transaction after each event's data and cursor: --crash-after dies here,
        before the COMMIT, as a process killed at the worst moment would."""
        self.applied_events += 1
        if self.args.crash_after and self.applied_events >= self.args.crash_after:
            log.warning("--crash-after %d: exiting without committing", self.args.crash_after)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_CRASHED)

    def after_commit(self) -> None:
        if self.applier.needs_refresh:
            subs = sorted(self.applier.needs_refresh)
            self.applier.needs_refresh.clear()
            self.full_refresh(subs, "snapshot record count mismatch")

    # -- stream -----------------------------------------------------------------------------------

    def stream_once(self) -> bool:
        """One Stream call, from the stored cursor. True once caught up (--until-caught-up)."""
        interval = self.args.heartbeat
        request = delivery_pb2.StreamRequest(
            cursor=self.store.cursor(),
            max_batch_records=self.args.max_batch_records,
            heartbeat_interval=duration(interval),
        )
        call = self.delivery.Stream(request)
        silence = Silence(call, 3 * interval)
        first = True
        try:
            for event in call:
                silence.touch()
                with self.store.transaction():
                    self.applier.apply(event)
                    self.store.set_cursor(event.cursor)  # in the same transaction (2)
                    if event.WhichOneof("event") != "heartbeat":
                        self.commit_point()
                self.after_commit()
                if event.WhichOneof("event") != "heartbeat":
                    self.backoff.reset()
                # The first message of every stream is a heartbeat sent before anything else, even
                # when events are due; a later one comes only when the stream has been idle.
                if self.args.until_caught_up and not first and event.WhichOneof("event") == "heartbeat":
                    hb = event.heartbeat
                    if hb.register_sequence == hb.head_sequence:
                        call.cancel()
                        return True
                first = False
            raise Retry("the server ended the stream")
        except grpc.RpcError as err:
            if silence.fired:
                raise Retry(f"nothing arrived for {3 * interval:g} s (three heartbeat intervals)") from None
            raise classify(err) from None
        except Gap:
            call.cancel()
            raise
        finally:
            silence.stop()

    # -- pull -------------------------------------------------------------------------------------

    def pull_once(self) -> bool:
        """One FetchEvents call, from the stored cursor. True once caught up (--until-caught-up)."""
        request = delivery_pb2.FetchEventsRequest(
            cursor=self.store.cursor(),
            max_events=self.args.max_events,
            max_batch_records=self.args.max_batch_records,
            wait=duration(self.args.wait),
        )
        try:
            # The long poll may take `wait`; allow for the answer's transfer on top.
            response = self.delivery.FetchEvents(request, timeout=self.args.wait + 30)
        except grpc.RpcError as err:
            raise classify(err) from None
        # The whole answer and its cursor in one transaction: all of it or none of it.
        with self.store.transaction():
            for event in response.events:
                self.applier.apply(event)
                self.commit_point()
            self.store.set_cursor(response.cursor)  # a bookmark when there were no events
        self.after_commit()
        if response.events:
            self.backoff.reset()
        log.debug(
            "pulled %d event(s); caught up: %s; sequence %d of %d",
            len(response.events),
            response.caught_up,
            response.register_sequence,
            response.head_sequence,
        )
        # caught_up false: more is due at once, so the loop fetches again without waiting.
        return (
            self.args.until_caught_up
            and response.caught_up
            and response.register_sequence == response.head_sequence
        )

    # -- recovery ---------------------------------------------------------------------------------

    def on_gap(self, gap: Gap) -> None:
        """(6): resume from the last stored cursor; if the same gap comes back, request a full
        refresh of the subscription (its snapshot replaces what we hold) and accept the gap."""
        key = (gap.subscription_id, gap.expected)
        if key not in self.gaps_seen:
            self.gaps_seen.add(key)
            log.warning("%s: resuming from the stored cursor", gap)
            return
        log.error("%s again: requesting a full refresh (report this to the agency)", gap)
        with self.store.transaction():
            self.store.set_last_event_number(gap.subscription_id, gap.got - 1)
        self.full_refresh([gap.subscription_id], "event number gap")

    def full_refresh(self, subscription_ids: list[str], reason: str) -> None:
        """RequestFullRefresh (9): fresh snapshots of every ACTIVE subscription (or of the listed
        ones) follow; for all of them (after CURSOR_EXPIRED) we continue from the cursor it returns,
        and reconcile our subscriptions' states with ListSubscriptions."""
        request = delivery_pb2.FullRefreshRequest(subscription_ids=subscription_ids, reason=reason)
        response = call_unary(self.delivery.RequestFullRefresh, request)
        self.stats.full_refreshes += 1
        if subscription_ids:
            # The refresh is appended to the history: the position we hold reaches it anyway.
            return
        with self.store.transaction():
            self.store.set_cursor(response.cursor)
        log.info(
            "full refresh: %d subscription(s) get a snapshot as of sequence %d",
            response.subscription_count,
            response.as_of_sequence,
        )
        self.reconcile()

    def reconcile(self) -> None:
        """Takes every subscription's current state from ListSubscriptions."""
        request = subscriptions_pb2.ListSubscriptionsRequest(page_size=1000)
        while True:
            try:
                with self.store.transaction():
                    for page in self.subscriptions.ListSubscriptions(request, timeout=60):
                        for subscription in page.subscriptions:
                            self.store.known_subscription(subscription)
                return
            except grpc.RpcError as err:
                action = classify(err)
                if not isinstance(action, Retry):
                    raise action from None
                time.sleep(action.delay or self.backoff.next_delay())


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def read_subscriptions(args) -> list:
    """The items to place: one JSON object per line of --file (NewSubscription in the protobuf JSON
    mapping), and/or one from --reference, --person, ..."""
    items = []
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    items.append(json_format.Parse(line, subscriptions_pb2.NewSubscription()))
                except json_format.ParseError as e:
                    raise Stop(EXIT_USAGE, f"{args.file} line {number}: {e}") from None
    if args.reference:
        if not (args.person and args.benefit and args.from_date and args.basis):
            raise Stop(EXIT_USAGE, "--reference needs --person, --benefit, --from and --basis")
        items.append(
            subscriptions_pb2.NewSubscription(
                client_reference=args.reference,
                person_id=args.person,
                benefit_type_codes=args.benefit,
                from_date=args.from_date,
                legal_basis=args.basis,
                consent_id=args.consent_id or "",
                case_reference=args.case_reference or "",
            )
        )
    if not items:
        raise Stop(EXIT_USAGE, "nothing to subscribe: give --file or --reference ...")
    return items


def cmd_subscribe(args, channel, store: Store) -> int:
    stub = subscriptions_pb2_grpc.SubscriptionServiceStub(channel)
    items = read_subscriptions(args)
    rejected = 0
    for start in range(0, len(items), 10_000):  # at most 10,000 items per call
        request = subscriptions_pb2.CreateSubscriptionsRequest(items=items[start : start + 10_000])
        # Resending after a timeout is safe: each item is idempotent by its client_reference.
        response = call_unary(stub.CreateSubscriptions, request, timeout=120)
        with store.transaction():
            for result in response.results:
                outcome = enum_name(subscriptions_pb2.CreateSubscriptionOutcome, result.outcome)
                outcome = outcome.removeprefix("CREATE_SUBSCRIPTION_OUTCOME_").lower()
                if result.HasField("subscription"):
                    store.known_subscription(result.subscription)
                    print(f"{outcome:9} {result.client_reference} {result.subscription.subscription_id}")
                else:
                    rejected += 1
                    error = result.error
                    reason = enum_name(errors_pb2.ErrorReason, error.reason)
                    where = f" ({error.metadata['field']})" if "field" in error.metadata else ""
                    print(f"{outcome:9} {result.client_reference}: {reason}{where}: {error.message}")
    return EXIT_REJECTED if rejected else EXIT_OK


def cmd_run(args, channel, store: Store) -> int:
    receiver = Receiver(args, channel, store)
    log.info(
        "receiving over %s, %s",
        args.transport,
        "resuming from the stored cursor" if receiver.stats.resumed_from_cursor else "from the beginning",
    )
    try:
        return receiver.run()
    except KeyboardInterrupt:
        log.info("stopped; the stored cursor covers everything applied")
        return EXIT_OK
    finally:
        # One JSON line on stdout: what this run did (the tests read it).
        print(json.dumps(receiver.stats.__dict__, sort_keys=True), flush=True)


def cmd_status(args, channel, store: Store) -> int:
    print(f"cursor: {'stored' if store.cursor() else 'none (starts from the beginning)'}")
    rows = store.db.execute(
        "SELECT s.subscription_id, s.client_reference, s.state, s.state_reason, s.last_event_number, "
        "(SELECT count(*) FROM live_records r WHERE r.subscription_id = s.subscription_id) "
        "FROM subscriptions s ORDER BY s.client_reference"
    )
    for sub, ref, state, reason, last, count in rows:
        print(f"{sub} {ref or '-'} {state} {reason or ''} event {last or 0}, {count} record(s)")
    return EXIT_OK


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", default="localhost:50051", help="the party API (default: %(default)s)")
    p.add_argument("--server-name", default="localhost", help="the name in the server's certificate")
    p.add_argument("--cert", default="certs-dev/insurer.pem", help="client certificate (PEM)")
    p.add_argument("--key", default="certs-dev/insurer.key", help="its private key (PEM)")
    p.add_argument("--ca", default="certs-dev/ca.pem", help="the CA to trust for the server (PEM)")
    p.add_argument("--db", default="lefi-client.db", help="the client's SQLite database")
    p.add_argument("--proto", default=generate.DEFAULT_PROTO_DIR, help="the proto/ directory")
    p.add_argument("--stubs-dir", default=os.path.join(here, ".stubs"), help="where generated stubs are cached")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = p.add_subparsers(dest="command", required=True)

    s = commands.add_parser("subscribe", help="place subscriptions (idempotent by client_reference)")
    s.add_argument("--file", help="JSON lines: one NewSubscription per line (protobuf JSON mapping)")
    s.add_argument("--reference", help="client_reference of one subscription")
    s.add_argument("--person", help="its person (personnummer or samordningsnummer)")
    s.add_argument("--benefit", action="append", help="benefit type code (repeat for several)")
    s.add_argument("--from", dest="from_date", help="from date, YYYY-MM-DD")
    s.add_argument("--basis", help="legal basis code")
    s.add_argument("--consent-id", help="consent id, when the basis requires one")
    s.add_argument("--case-reference", help="your case reference, when the basis requires one")

    r = commands.add_parser("run", help="receive deliveries and apply them to the database")
    r.add_argument("--transport", choices=["stream", "pull"], default="stream")
    r.add_argument("--until-caught-up", action="store_true", help="exit 0 once at the register's head")
    r.add_argument("--heartbeat", type=float, default=15.0, help="stream: heartbeat interval, s (1-300)")
    r.add_argument("--wait", type=float, default=30.0, help="pull: long-poll wait, s (at most 60)")
    r.add_argument("--max-events", type=int, default=0, help="pull: messages per answer (0: server default)")
    r.add_argument("--max-batch-records", type=int, default=0, help="records per RecordBatch (0: default)")
    r.add_argument("--crash-after", type=int, default=0, help=argparse.SUPPRESS)  # tests: die mid-transaction

    commands.add_parser("status", help="what the local database holds")
    return p.parse_args(argv)


def interrupted(signum, frame):
    """SIGTERM stops the client as Ctrl-C does: the transaction in progress rolls back, and the
    stored cursor covers everything committed."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, interrupted)
    args = parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    load_stubs(args.proto, args.stubs_dir)
    store = Store(args.db)
    command = {"subscribe": cmd_subscribe, "run": cmd_run, "status": cmd_status}[args.command]
    channel = open_channel(args) if args.command != "status" else None
    try:
        return command(args, channel, store)
    except Stop as stop:
        print(f"lefi-client: {stop}", file=sys.stderr)
        return stop.status
    finally:
        if channel is not None:
            channel.close()


if __name__ == "__main__":
    sys.exit(main())
