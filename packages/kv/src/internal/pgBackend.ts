import * as Reactivity from "@effect/experimental/Reactivity"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as BucketProps from "../BucketProps.js"
import type * as KvBackend from "../KvBackend.js"
import { StorageError } from "../KvError.js"
import type * as PgBackend from "../PgBackend.js"
import * as bucketPropsRecord from "./bucketProps.js"
import * as pgContent from "./pgContent.js"

const backendName = "postgres"

const Positive = Schema.Int.pipe(Schema.positive())
const DurationInput = Schema.declare((u): u is Duration.DurationInput => Option.isSome(Duration.decodeUnknown(u)), {
  identifier: "DurationInput"
})

/** The options as `make` checks them (the URL is redacted so it never shows in logs or errors). */
const OptionsSchema = Schema.Struct({
  url: Schema.Union(Schema.NonEmptyTrimmedString, Schema.RedactedFromSelf(Schema.NonEmptyTrimmedString)),
  maxConnections: Schema.optional(Positive),
  minConnections: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  connectTimeout: Schema.optional(DurationInput),
  idleTimeout: Schema.optional(DurationInput),
  requestTimeout: Schema.optional(DurationInput),
  startTimeout: Schema.optional(DurationInput),
  listBatchSize: Schema.optional(Positive),
  listBatchBytes: Schema.optional(Positive),
  applicationName: Schema.optional(Schema.String)
})

const defaults = {
  maxConnections: 10,
  minConnections: 0,
  connectTimeout: Duration.seconds(5),
  idleTimeout: Duration.seconds(30),
  requestTimeout: Duration.seconds(10),
  startTimeout: Duration.seconds(30),
  listBatchSize: 1000,
  listBatchBytes: 64 * 1024
} as const

/** The table the migrator records applied migrations in. */
export const migrationsTable = "warren_kv_migrations"

/** The advisory lock key (any fixed 64-bit number) that serializes schema set-up across servers. */
const migrationLock = 0x7761_7272_656e

/**
 * The schema, one migration per step; applied at start by `@effect/sql`'s migrator, which takes a table
 * lock so servers starting together apply each step once. Never edit a released step: add one.
 */
export const migrations: Record<string, Effect.Effect<void, SqlError, SqlClient.SqlClient>> = {
  "1_objects": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`CREATE TABLE IF NOT EXISTS warren_kv_objects (
      bucket_type bytea NOT NULL,
      bucket bytea NOT NULL,
      key bytea NOT NULL,
      vclock bytea NOT NULL,
      content bytea NOT NULL,
      size bigint NOT NULL,
      PRIMARY KEY (bucket_type, bucket, key)
    )`.pipe(Effect.asVoid)),
  // Siblings (allow_mult): the other values of a row, as one protobuf record (NULL: one value); and the
  // properties set on buckets, shared by every server on the database.
  "2_siblings_and_bucket_props": Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(
      sql`ALTER TABLE warren_kv_objects ADD COLUMN IF NOT EXISTS siblings bytea`,
      sql`CREATE TABLE IF NOT EXISTS warren_kv_bucket_props (
        bucket_type bytea NOT NULL,
        bucket bytea NOT NULL,
        props bytea NOT NULL,
        PRIMARY KEY (bucket_type, bucket)
      )`
    ).pipe(Effect.asVoid))
}

const failures = Metric.counter("warren_kv_pg_failures", {
  description: "PostgreSQL KV backend requests that failed (database unreachable, timed out or refused)",
  incremental: true
})
const casConflicts = Metric.counter("warren_kv_pg_cas_conflicts", {
  description: "Compare-and-set writes of the PostgreSQL KV backend that found another write first",
  incremental: true
})

interface Row {
  readonly vclock: Uint8Array
  readonly content: Uint8Array
  readonly siblings: Uint8Array | null
}

/** Splits names into batches of at most `maxBytes` bytes of names (a single longer name still forms a batch). */
const byBytes = (names: ReadonlyArray<Uint8Array>, maxBytes: number): Array<ReadonlyArray<Uint8Array>> => {
  const out: Array<ReadonlyArray<Uint8Array>> = []
  let batch: Array<Uint8Array> = []
  let bytes = 0
  for (const name of names) {
    if (batch.length > 0 && bytes + name.length > maxBytes) {
      out.push(batch)
      batch = []
      bytes = 0
    }
    batch.push(name)
    bytes += name.length
  }
  if (batch.length > 0) out.push(batch)
  return out
}

/** The size charged per object, as the embedded store counts it (payload plus a fixed overhead). */
const objectOverhead = 128
const recordSize = (
  address: KvBackend.Address,
  record: KvBackend.StoredObject,
  encoded: Uint8Array,
  siblings: Uint8Array | null
): number =>
  objectOverhead + address.type.length + address.bucket.length + address.key.length + record.vclock.length +
  encoded.length + (siblings?.length ?? 0)

/** Builds the PostgreSQL backend (see `PgBackend.make`). */
export const make = (
  options: PgBackend.Options
): Effect.Effect<KvBackend.Backend, StorageError | ParseResult.ParseError, Scope.Scope> =>
  Effect.gen(function*() {
    const checked = yield* Schema.decodeUnknown(OptionsSchema)(options)
    const url = typeof checked.url === "string" ? Redacted.make(checked.url) : checked.url
    const requestTimeout = Duration.decode(checked.requestTimeout ?? defaults.requestTimeout)
    const startTimeout = Duration.decode(checked.startTimeout ?? defaults.startTimeout)
    const listBatchSize = checked.listBatchSize ?? defaults.listBatchSize
    const listBatchBytes = checked.listBatchBytes ?? defaults.listBatchBytes

    const unavailable = (cause: unknown, detail: string) =>
      new StorageError({ reason: "Unavailable", backend: backendName, detail, cause })

    // Connect and migrate, retrying on a schedule while the database is not there yet (a server started
    // together with its database), until `startTimeout`.
    const connect = Effect.gen(function*() {
      const client = yield* PgClient.make({
        url,
        maxConnections: checked.maxConnections ?? defaults.maxConnections,
        minConnections: checked.minConnections ?? defaults.minConnections,
        connectTimeout: checked.connectTimeout ?? defaults.connectTimeout,
        idleTimeout: checked.idleTimeout ?? defaults.idleTimeout,
        applicationName: checked.applicationName ?? "warren-kv"
      })
      // The migrator creates its table unless it exists, which races when servers start together; create
      // it first under a transaction-scoped advisory lock, so exactly one server does.
      yield* client.withTransaction(Effect.zipRight(
        client`SELECT pg_advisory_xact_lock(${migrationLock})`,
        client`CREATE TABLE IF NOT EXISTS ${client(migrationsTable)} (
          migration_id integer PRIMARY KEY,
          created_at timestamp with time zone NOT NULL DEFAULT now(),
          name text NOT NULL
        )`
      ))
      yield* Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: migrationsTable }).pipe(
        Effect.provideService(SqlClient.SqlClient, client)
      )
      return client
    }).pipe(Effect.provide(Reactivity.layer))
    // Each attempt gets its own scope (a child of the backend's), closed when the attempt fails, so a pool
    // opened by an attempt whose migration failed does not stay open beside the next attempt's.
    const attempt = Effect.flatMap(Effect.scope, (outer) =>
      Effect.flatMap(Scope.fork(outer, ExecutionStrategy.sequential), (scope) =>
        connect.pipe(
          Scope.extend(scope),
          Effect.onError((cause) =>
            Scope.close(scope, Exit.failCause(cause))
          )
        )))
    const sql = yield* attempt.pipe(
      Effect.tapError((e) =>
        Effect.logWarning(`KV store (postgres): cannot start yet: ${e._tag === "SqlError" ? describe(e) : e.message}`)
      ),
      Effect.retry(
        Schedule.exponential("100 millis", 2).pipe(
          Schedule.union(Schedule.spaced("2 seconds")),
          Schedule.upTo(startTimeout)
        )
      ),
      Effect.mapError((e) =>
        unavailable(e, `could not connect and migrate: ${e._tag === "SqlError" ? describe(e) : e.message}`)
      )
    )

    /** One request: bounded by `requestTimeout`; any failure becomes `StorageError` (counted). */
    const request = <A>(what: string, effect: Effect.Effect<A, SqlError>): Effect.Effect<A, StorageError> =>
      effect.pipe(
        // On timeout, answer now: the query's interruption (a best-effort pg_cancel_backend, which the driver
        // bounds at 5 s) finishes in the background, supervised by the request's fiber scope.
        Effect.disconnect,
        Effect.timeoutFail({
          duration: requestTimeout,
          onTimeout: () => unavailable(undefined, `${what}: no answer within ${Duration.format(requestTimeout)}`)
        }),
        Effect.catchTag("SqlError", (e) => Effect.fail(unavailable(e, `${what}: ${describe(e)}`))),
        Effect.tapError(() => Metric.increment(failures))
      )

    const toStored = (row: Row): KvBackend.StoredObject => {
      const content = pgContent.decode(row.content)
      return row.siblings === null
        ? { vclock: row.vclock, content }
        : { vclock: row.vclock, content, siblings: pgContent.decodeSiblings(row.siblings) }
    }

    const get = (address: KvBackend.Address) =>
      request(
        "get",
        sql<Row>`SELECT vclock, content, siblings FROM warren_kv_objects
          WHERE bucket_type = ${address.type} AND bucket = ${address.bucket} AND key = ${address.key}`
      ).pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), toStored)),
        Effect.withSpan("PgBackend.get")
      )

    /**
     * One query: the object's row with its bucket's props as a scalar sub-select (NULL: none set). No row
     * when the key has no object, and then the props do not matter: a put on a missing key stores one value
     * whatever they are.
     */
    const getWithBucketProps = (address: KvBackend.Address) =>
      request(
        "get",
        sql<Row & { readonly props: Uint8Array | null }>`
          SELECT vclock, content, siblings,
            (SELECT p.props FROM warren_kv_bucket_props p
              WHERE p.bucket_type = ${address.type} AND p.bucket = ${address.bucket}) AS props
          FROM warren_kv_objects
          WHERE bucket_type = ${address.type} AND bucket = ${address.bucket} AND key = ${address.key}`
      ).pipe(
        Effect.map((rows) => {
          const row = rows[0]
          return {
            object: row === undefined ? Option.none() : Option.some(toStored(row)),
            props: row?.props == null ? Option.none() : Option.some(bucketPropsRecord.decode(row.props))
          }
        }),
        Effect.withSpan("PgBackend.getWithBucketProps")
      )

    /**
     * One statement per case, so each is atomic on its own at READ COMMITTED: a conditional UPDATE or
     * DELETE re-checks `vclock = expected` on the newest row version after waiting for a concurrent
     * writer's row lock, and INSERT ... ON CONFLICT DO NOTHING lets exactly one creator win.
     */
    const compareAndSet = (
      address: KvBackend.Address,
      expected: Option.Option<Uint8Array>,
      next: Option.Option<KvBackend.StoredObject>
    ): Effect.Effect<boolean, StorageError> => {
      const { bucket, key, type } = address
      let statement: Effect.Effect<ReadonlyArray<unknown>, SqlError>
      if (Option.isSome(next)) {
        const encoded = pgContent.encode(next.value.content)
        const others = next.value.siblings
        const siblings = others === undefined || others.length === 0 ? null : pgContent.encodeSiblings(others)
        const size = recordSize(address, next.value, encoded, siblings)
        statement = Option.isNone(expected)
          ? sql`INSERT INTO warren_kv_objects (bucket_type, bucket, key, vclock, content, siblings, size)
              VALUES (${type}, ${bucket}, ${key}, ${next.value.vclock}, ${encoded}, ${siblings}, ${size})
              ON CONFLICT DO NOTHING RETURNING 1`
          : sql`UPDATE warren_kv_objects
              SET vclock = ${next.value.vclock}, content = ${encoded}, siblings = ${siblings}, size = ${size}
              WHERE bucket_type = ${type} AND bucket = ${bucket} AND key = ${key} AND vclock = ${expected.value}
              RETURNING 1`
      } else {
        statement = Option.isNone(expected)
          ? Effect.map(
            sql`SELECT 1 FROM warren_kv_objects WHERE bucket_type = ${type} AND bucket = ${bucket} AND key = ${key}`,
            (rows) => (rows.length === 0 ? [1] : [])
          )
          : sql`DELETE FROM warren_kv_objects
              WHERE bucket_type = ${type} AND bucket = ${bucket} AND key = ${key} AND vclock = ${expected.value}
              RETURNING 1`
      }
      return request("compare-and-set", statement).pipe(
        Effect.map((rows) => rows.length === 1),
        Effect.tap((won) => (won ? Effect.void : Metric.increment(casConflicts))),
        Effect.withSpan("PgBackend.compareAndSet")
      )
    }

    const del = (address: KvBackend.Address) =>
      request(
        "delete",
        sql`DELETE FROM warren_kv_objects
          WHERE bucket_type = ${address.type} AND bucket = ${address.bucket} AND key = ${address.key} RETURNING 1`
      ).pipe(Effect.map((rows) => rows.length > 0), Effect.withSpan("PgBackend.delete"))

    /**
     * Pages through an index in key order, each page one short query that starts after the last name of
     * the previous page (keyset pagination): memory is one page, and no connection or transaction is held
     * while the client reads, however slow it is.
     */
    const paged = (
      what: string,
      page: (after: Uint8Array | undefined) => Effect.Effect<ReadonlyArray<{ readonly name: Uint8Array }>, SqlError>
    ): Stream.Stream<ReadonlyArray<Uint8Array>, StorageError> =>
      Stream.paginateChunkEffect(undefined as Uint8Array | undefined, (after) =>
        request(what, page(after)).pipe(
          Effect.map((rows) => {
            const names = rows.map((r) => r.name)
            const last = names.length === listBatchSize ? Option.some(names[names.length - 1]) : Option.none()
            return [Chunk.fromIterable(byBytes(names, listBatchBytes)), last] as const
          })
        ))

    const listKeys = (type: Uint8Array, bucket: Uint8Array) =>
      paged("list keys", (after) =>
        after === undefined
          ? sql`SELECT key AS name FROM warren_kv_objects WHERE bucket_type = ${type} AND bucket = ${bucket}
              ORDER BY key LIMIT ${listBatchSize}`
          : sql`SELECT key AS name FROM warren_kv_objects
              WHERE bucket_type = ${type} AND bucket = ${bucket} AND key > ${after}
              ORDER BY key LIMIT ${listBatchSize}`)

    /**
     * Distinct bucket names without reading every key: a recursive query that jumps from one bucket to
     * the next through the primary key index (a "loose index scan"), one page at a time.
     */
    const listBuckets = (type: Uint8Array) =>
      paged("list buckets", (after) =>
        sql`WITH RECURSIVE b(name) AS (
            (SELECT bucket FROM warren_kv_objects
              WHERE bucket_type = ${type} AND (${after ?? null}::bytea IS NULL OR bucket > ${after ?? null}::bytea)
              ORDER BY bucket LIMIT 1)
            UNION ALL
            SELECT (SELECT o.bucket FROM warren_kv_objects o
              WHERE o.bucket_type = ${type} AND o.bucket > b.name ORDER BY o.bucket LIMIT 1)
            FROM b WHERE b.name IS NOT NULL
          )
          SELECT name FROM b WHERE name IS NOT NULL LIMIT ${listBatchSize}`)

    const getBucketProps = (type: Uint8Array, bucket: Uint8Array) =>
      request(
        "get bucket properties",
        sql<{ readonly props: Uint8Array }>`SELECT props FROM warren_kv_bucket_props
          WHERE bucket_type = ${type} AND bucket = ${bucket}`
      ).pipe(
        Effect.map((rows) => Option.map(Option.fromNullable(rows[0]), (row) => bucketPropsRecord.decode(row.props))),
        Effect.withSpan("PgBackend.getBucketProps")
      )

    const setBucketProps = (type: Uint8Array, bucket: Uint8Array, props: Option.Option<BucketProps.Overrides>) =>
      request(
        "set bucket properties",
        Option.isNone(props)
          ? sql`DELETE FROM warren_kv_bucket_props WHERE bucket_type = ${type} AND bucket = ${bucket}`
          : sql`INSERT INTO warren_kv_bucket_props (bucket_type, bucket, props)
              VALUES (${type}, ${bucket}, ${bucketPropsRecord.encode(props.value)})
              ON CONFLICT (bucket_type, bucket) DO UPDATE SET props = EXCLUDED.props`
      ).pipe(Effect.asVoid, Effect.withSpan("PgBackend.setBucketProps"))

    const usage = request(
      "usage",
      sql<{ readonly objects: number; readonly bytes: number }>`
        SELECT count(*)::float8 AS objects, coalesce(sum(size), 0)::float8 AS bytes FROM warren_kv_objects`
    ).pipe(Effect.map((rows) => ({
      objects: rows[0]?.objects ?? 0,
      bytes: rows[0]?.bytes ?? 0,
      limitBytes: Number.MAX_SAFE_INTEGER
    })))

    return {
      name: backendName,
      get,
      compareAndSet,
      delete: del,
      listBuckets,
      listKeys,
      getWithBucketProps,
      getBucketProps,
      setBucketProps,
      usage,
      checkpoint: Effect.void
    } satisfies KvBackend.Backend
  })

/** A short, password-free description of a database failure. */
const describe = (e: SqlError): string => {
  const cause = e.cause
  if (cause instanceof Error) {
    const code = (cause as Error & { readonly code?: unknown }).code
    return typeof code === "string" ? `${e.message}: ${cause.message} (${code})` : `${e.message}: ${cause.message}`
  }
  return e.message
}
