#!/usr/bin/env python3
"""Rolls 2024's migration out over a few organizations, one first and then
the rest, follows the rollout to its end, reads it back, then shows how a
program reads a bad request's error. Environment: HERA_ADDR (default
127.0.0.1:50051), HERA_TOKEN (a platform operator's: PLATFORM_ADMIN or
PLATFORM_OPERATOR in HERA's platform organization) and HERA_ORGS (the
organization ids, comma-separated).

Exits 0 when the rollout SUCCEEDED with every organization PASSED and the
bad request's error decoded as INVALID_ARGUMENT / INVALID_FIELD naming
stages[0].percent; 1 otherwise; 2 on bad usage.
"""
from __future__ import annotations

import os
import sys
import uuid

import grpc

from hera_client import RolloutClient, Stage, decode_error, pb, rollout_pb

FROM_DATE, TO_DATE = "2024-01-01", "2024-12-31"
POLICY = pb.CLOSED_PERIOD_POLICY_POST_TO_OPEN_PERIOD


def describe(rollout: rollout_pb.Rollout) -> str:
    standings = [rollout_pb.OrganizationStanding.Name(o.standing) for o in rollout.organizations]
    counts = " ".join(f"{name}={standings.count(name)}" for name in sorted(set(standings)))
    # current_stage counts from 0, and is stage_count once every stage passed.
    stage = min(rollout.current_stage + 1, rollout.stage_count)
    return (
        f"rollout {rollout_pb.RolloutState.Name(rollout.state)}"
        f" stage {stage}/{rollout.stage_count}"
        f" {rollout.percent_complete:.1f}% {counts}"
    )


def main() -> int:
    address = os.environ.get("HERA_ADDR", "127.0.0.1:50051")
    token = os.environ.get("HERA_TOKEN")
    organizations = [org for org in os.environ.get("HERA_ORGS", "").split(",") if org]
    if not token or not organizations:
        print("set HERA_TOKEN (a platform operator's) and HERA_ORGS (comma-separated ids)", file=sys.stderr)
        return 2

    with RolloutClient(address, token) as fleet:
        try:
            started = fleet.start(
                organizations,
                [Stage.count(1), Stage.rest_of_them()],
                FROM_DATE, TO_DATE,
                request_id=f"python-rollout-example-{uuid.uuid4()}",
                closed_period_policy=POLICY,
                batch_size=250,
                max_concurrency=2,
            )
            print(f"start: rollout {started.rollout_id} of {len(started.organizations)} organizations"
                  f" in {started.stage_count} stages")
            last = started
            for snapshot in fleet.watch(started.rollout_id):
                print(f"snapshot {describe(snapshot)}")
                last = snapshot
            final_state = rollout_pb.RolloutState.Name(last.state)
            print(f"final state: {final_state} ({last.message})")

            rollout = fleet.get(started.rollout_id)
            for organization in rollout.organizations:
                print(
                    f"organization {organization.organization_id} stage {organization.stage + 1}"
                    f" {rollout_pb.OrganizationStanding.Name(organization.standing)}"
                    f" validation {organization.validation_overall or '-'}"
                    f" migration {organization.migration_id or '-'}"
                )
            passed = all(
                o.standing == rollout_pb.ORGANIZATION_STANDING_PASSED for o in rollout.organizations
            )
        except grpc.RpcError as error:
            failure = decode_error(error)
            print(f"call failed: {failure.code.name} {failure.reason}: {failure.message}", file=sys.stderr)
            return 1

        # A bad request, read as a program reads it: the code, the stable
        # reason and the field, never the message text.
        try:
            fleet.start(organizations, [Stage.share(0)], FROM_DATE, TO_DATE)
            print("the bad request was accepted", file=sys.stderr)
            return 1
        except grpc.RpcError as error:
            bad = decode_error(error)
        print(
            f"bad request: code={bad.code.name} reason={bad.reason} field={bad.field}"
            f" domain={bad.domain} message={bad.message!r}"
        )

    expected = (
        final_state == "ROLLOUT_STATE_SUCCEEDED"
        and passed
        and bad.code == grpc.StatusCode.INVALID_ARGUMENT
        and bad.reason == "INVALID_FIELD"
        and bad.field == "stages[0].percent"
    )
    print("ok" if expected else "unexpected outcome")
    return 0 if expected else 1


if __name__ == "__main__":
    sys.exit(main())
