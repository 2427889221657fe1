// Small typed clients of hera.migration.v2: MigrationService (HeraClient)
// and RolloutService (RolloutClient, in rollout_client.ts).
//
//   const hera = new HeraClient('127.0.0.1:50051', token);
//   const plan = await hera.preview({ organization_id, from_date, to_date });
//   for await (const progress of hera.start({ organization_id, from_date, to_date, request_id })) {
//     console.log(progress.sequence, progress.state);
//   }
//
// The service is loaded at run time from the repository's proto
// (@grpc/proto-loader); its types are generated from the same proto by
// `npm run generate` (proto-loader-gen-types, into src/generated/). Every
// call carries `authorization: Bearer <token>`. A failed call rejects (or
// throws while iterating) with a grpc.ServiceError; decodeError reads its
// google.rpc details (ErrorInfo's stable reason, BadRequest's violations).
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import { getProtoPath } from 'google-proto-files';

import type { ProtoGrpcType } from './generated/migration';
import type { MigrationServiceClient } from './generated/hera/migration/v2/MigrationService';
import type { Migration__Output } from './generated/hera/migration/v2/Migration';
import type { MigrationProgress__Output } from './generated/hera/migration/v2/MigrationProgress';
import type { PreviewCandidatesRequest } from './generated/hera/migration/v2/PreviewCandidatesRequest';
import type { PreviewCandidatesResponse__Output } from './generated/hera/migration/v2/PreviewCandidatesResponse';
import type { StartMigrationRequest } from './generated/hera/migration/v2/StartMigrationRequest';
import type { StartMigrationResponse__Output } from './generated/hera/migration/v2/StartMigrationResponse';
import type { WatchMigrationResponse__Output } from './generated/hera/migration/v2/WatchMigrationResponse';

export type { Migration__Output as Migration } from './generated/hera/migration/v2/Migration';
export type { MigrationProgress__Output as MigrationProgress } from './generated/hera/migration/v2/MigrationProgress';
export type { PreviewCandidatesRequest } from './generated/hera/migration/v2/PreviewCandidatesRequest';
export type { PreviewCandidatesResponse__Output as PreviewCandidatesResponse } from './generated/hera/migration/v2/PreviewCandidatesResponse';
export type { StartMigrationRequest } from './generated/hera/migration/v2/StartMigrationRequest';

/** The repository's proto/ directory (dist/ lives in clients/typescript/). */
export const PROTO_ROOT = process.env.HERA_PROTO_ROOT ?? path.resolve(__dirname, '..', '..', '..', 'proto');

/** The same options `npm run generate` gives proto-loader-gen-types: the
 * generated __Output types describe exactly what the loader returns. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** The domain of every ErrorInfo the server sends. */
export const ERROR_DOMAIN = 'hera-migrate';

export interface HeraClientOptions {
  /** Channel credentials; default plaintext (grpc.credentials.createSsl(ca) for HERA_TLS_CERT). */
  credentials?: grpc.ChannelCredentials;
  /** Deadline of each unary call, in milliseconds (streams run until their run ends). */
  timeoutMs?: number;
}

/** Loads one of the repository's protos (`hera/migration/v2/<name>.proto`)
 * with the options the generated types describe. */
export function loadProto<T>(name: string): T {
  const definition = protoLoader.loadSync(`hera/migration/v2/${name}.proto`, LOADER_OPTIONS);
  return grpc.loadPackageDefinition(definition) as unknown as T;
}

/** What every client of ours shares: its user's token on each call, and
 * the deadline of unary calls. */
export abstract class Connected {
  private readonly token: string;
  private readonly timeoutMs: number;

  protected constructor(token: string, options: HeraClientOptions) {
    this.token = token;
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  protected metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${this.token}`);
    return metadata;
  }

  protected unaryOptions(): grpc.CallOptions {
    return { deadline: Date.now() + this.timeoutMs };
  }
}

/** MigrationService over one channel, on behalf of the token's user. */
export class HeraClient extends Connected {
  private readonly client: MigrationServiceClient;

  constructor(address: string, token: string, options: HeraClientOptions = {}) {
    super(token, options);
    const loaded = loadProto<ProtoGrpcType>('migration');
    this.client = new loaded.hera.migration.v2.MigrationService(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
    );
  }

  close(): void {
    this.client.close();
  }

  /** PreviewCandidates: the exact, read-only plan (candidates, prediction,
   * risks, plan_fingerprint) for these choices. */
  preview(request: PreviewCandidatesRequest): Promise<PreviewCandidatesResponse__Output> {
    return new Promise((resolve, reject) => {
      this.client.PreviewCandidates(request, this.metadata(), this.unaryOptions(), (error, response) =>
        error || !response ? reject(error) : resolve(response),
      );
    });
  }

  /** StartMigration: creates a run and yields each of its events until it
   * ends (the last one's `state` says how). The run belongs to the server:
   * leaving the loop does not stop it (watch picks it up). Errors throw
   * from the loop. */
  async *start(request: StartMigrationRequest): AsyncGenerator<MigrationProgress__Output> {
    const call = this.client.StartMigration(request, this.metadata());
    for await (const response of call as AsyncIterable<StartMigrationResponse__Output>) {
      if (response.progress) yield response.progress;
    }
  }

  /** WatchMigration: the run's events after `afterSequence` (0: its whole
   * history), then live ones until it ends. */
  async *watch(
    organizationId: string,
    migrationId: string,
    afterSequence = 0,
  ): AsyncGenerator<MigrationProgress__Output> {
    const call = this.client.WatchMigration(
      { organization_id: organizationId, migration_id: migrationId, after_sequence: afterSequence },
      this.metadata(),
    );
    for await (const response of call as AsyncIterable<WatchMigrationResponse__Output>) {
      if (response.progress) yield response.progress;
    }
  }

  /** GetMigration: the run with its parameters and latest event. */
  get(organizationId: string, migrationId: string): Promise<Migration__Output> {
    return new Promise((resolve, reject) => {
      this.client.GetMigration(
        { organization_id: organizationId, migration_id: migrationId },
        this.metadata(),
        this.unaryOptions(),
        (error, response) => (error || !response?.migration ? reject(error) : resolve(response.migration)),
      );
    });
  }

}

/** One google.rpc.BadRequest.FieldViolation. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** A failed call as a program reads it: branch on `reason`, not on `message`. */
export interface DecodedError {
  code: grpc.status;
  /** The code's name: "INVALID_ARGUMENT", "ABORTED", ... */
  codeName: string;
  message: string;
  /** ErrorInfo.reason ("INVALID_FIELD", "RUN_ALREADY_ACTIVE", ...); undefined
   * when the status carried no ErrorInfo (say a proxy answered, not us). */
  reason?: string;
  domain?: string;
  /** ErrorInfo.metadata ({ field: "from_date" } for INVALID_FIELD). */
  metadata: Record<string, string>;
  fieldViolations: FieldViolation[];
  /** The field the error names: ErrorInfo's, else the first violation's. */
  field?: string;
  /** Every detail, unpacked by its type URL, for those not read above
   * (ResourceInfo, PreconditionFailure, RetryInfo, ...). */
  details: Array<{ type: string; value: Record<string, unknown> }>;
}

let rpcRoot: protobuf.Root | undefined;

/** google.rpc's Status and error details, from google-proto-files' copies of
 * googleapis' protos (protobufjs bundles the google.protobuf ones they import). */
function rpcTypes(): protobuf.Root {
  rpcRoot ??= new protobuf.Root().loadSync(
    [getProtoPath('rpc', 'status.proto'), getProtoPath('rpc', 'error_details.proto')],
    { keepCase: true },
  );
  return rpcRoot;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true };

function isServiceError(error: unknown): error is grpc.ServiceError {
  return typeof error === 'object' && error !== null && 'code' in error && 'metadata' in error;
}

/** Reads a failed call's code, message and google.rpc details (the
 * grpc-status-details-bin trailer, a google.rpc.Status whose details are
 * Anys) into a DecodedError. */
export function decodeError(error: unknown): DecodedError {
  if (!isServiceError(error)) {
    return { code: grpc.status.UNKNOWN, codeName: 'UNKNOWN', message: String(error), metadata: {}, fieldViolations: [], details: [] };
  }
  const decoded: DecodedError = {
    code: error.code,
    codeName: grpc.status[error.code] ?? String(error.code),
    message: error.details,
    metadata: {},
    fieldViolations: [],
    details: [],
  };
  const [bin] = error.metadata.get('grpc-status-details-bin');
  if (!(bin instanceof Buffer)) return decoded;
  const root = rpcTypes();
  const status = root.lookupType('google.rpc.Status').decode(bin) as unknown as {
    message: string;
    details: Array<{ type_url: string; value: Uint8Array }>;
  };
  decoded.message = status.message || decoded.message;
  for (const any of status.details) {
    const type = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
    let messageType: protobuf.Type;
    try {
      messageType = root.lookupType(type);
    } catch {
      decoded.details.push({ type, value: {} });
      continue;
    }
    const value = messageType.toObject(messageType.decode(any.value), TO_OBJECT);
    decoded.details.push({ type, value });
    if (type === 'google.rpc.ErrorInfo') {
      decoded.reason = value.reason as string;
      decoded.domain = value.domain as string;
      decoded.metadata = value.metadata as Record<string, string>;
    } else if (type === 'google.rpc.BadRequest') {
      for (const violation of value.field_violations as FieldViolation[]) {
        decoded.fieldViolations.push({ field: violation.field, description: violation.description });
      }
    }
  }
  decoded.field = decoded.metadata.field ?? decoded.fieldViolations[0]?.field;
  return decoded;
}
