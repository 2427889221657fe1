// Rolls 2024's migration out over a few organizations, one first and then
// the rest, follows the rollout to its end, reads it back, then shows how a
// program reads a bad request's error. Environment: HERA_ADDR (default
// 127.0.0.1:50051), HERA_TOKEN (a platform operator's: PLATFORM_ADMIN or
// PLATFORM_OPERATOR in HERA's platform organization) and HERA_ORGS (the
// organization ids, comma-separated).
//
// Exits 0 when the rollout SUCCEEDED with every organization PASSED and the
// bad request's error decoded as INVALID_ARGUMENT / INVALID_FIELD naming
// stages[0].percent; 1 otherwise; 2 on bad usage.
import { randomUUID } from 'node:crypto';

import { decodeError, type DecodedError } from './hera_client';
import { RolloutClient, stage, type Rollout } from './rollout_client';

const MIGRATION = {
  from_date: '2024-01-01',
  to_date: '2024-12-31',
  closed_period_policy: 'CLOSED_PERIOD_POLICY_POST_TO_OPEN_PERIOD' as const,
  batch_size: 250,
};

function describe(rollout: Rollout): string {
  const counts: Record<string, number> = {};
  for (const organization of rollout.organizations) {
    counts[organization.standing] = (counts[organization.standing] ?? 0) + 1;
  }
  const standings = Object.keys(counts)
    .sort()
    .map((standing) => `${standing}=${counts[standing]}`)
    .join(' ');
  // current_stage counts from 0, and is stage_count once every stage passed.
  const current = Math.min(rollout.current_stage + 1, rollout.stage_count);
  return (
    `rollout ${rollout.state} stage ${current}/${rollout.stage_count}` +
    ` ${rollout.percent_complete.toFixed(1)}% ${standings}`
  );
}

async function main(): Promise<number> {
  const address = process.env.HERA_ADDR ?? '127.0.0.1:50051';
  const token = process.env.HERA_TOKEN;
  const organizations = (process.env.HERA_ORGS ?? '').split(',').filter((org) => org !== '');
  if (!token || organizations.length === 0) {
    console.error("set HERA_TOKEN (a platform operator's) and HERA_ORGS (comma-separated ids)");
    return 2;
  }

  const fleet = new RolloutClient(address, token);
  try {
    let finalState: string;
    let passed: boolean;
    try {
      const started = await fleet.start({
        organization_ids: organizations,
        stages: [stage.count(1), stage.rest()],
        migration: MIGRATION,
        max_concurrency: 2,
        request_id: `typescript-rollout-example-${randomUUID()}`,
      });
      console.log(
        `start: rollout ${started.rollout_id} of ${started.organizations.length} organizations` +
          ` in ${started.stage_count} stages`,
      );
      let last = started;
      for await (const snapshot of fleet.watch(started.rollout_id)) {
        console.log(`snapshot ${describe(snapshot)}`);
        last = snapshot;
      }
      finalState = last.state;
      console.log(`final state: ${finalState} (${last.message})`);

      const rollout = await fleet.get(started.rollout_id);
      for (const organization of rollout.organizations) {
        console.log(
          `organization ${organization.organization_id} stage ${organization.stage + 1} ${organization.standing}` +
            ` validation ${organization.validation_overall || '-'} migration ${organization.migration_id || '-'}`,
        );
      }
      passed = rollout.organizations.every((o) => o.standing === 'ORGANIZATION_STANDING_PASSED');
    } catch (error) {
      const failure = decodeError(error);
      console.error(`call failed: ${failure.codeName} ${failure.reason}: ${failure.message}`);
      return 1;
    }

    // A bad request, read as a program reads it: the code, the stable reason
    // and the field, never the message text.
    let bad: DecodedError;
    try {
      await fleet.start({ organization_ids: organizations, stages: [stage.share(0)], migration: MIGRATION });
      console.error('the bad request was accepted');
      return 1;
    } catch (error) {
      bad = decodeError(error);
    }
    console.log(
      `bad request: code=${bad.codeName} reason=${bad.reason} field=${bad.field}` +
        ` domain=${bad.domain} message=${JSON.stringify(bad.message)}`,
    );

    const expected =
      finalState === 'ROLLOUT_STATE_SUCCEEDED' &&
      passed &&
      bad.codeName === 'INVALID_ARGUMENT' &&
      bad.reason === 'INVALID_FIELD' &&
      bad.field === 'stages[0].percent';
    console.log(expected ? 'ok' : 'unexpected outcome');
    return expected ? 0 : 1;
  } finally {
    fleet.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
