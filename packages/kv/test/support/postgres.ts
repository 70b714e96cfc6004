/** The kv project's PostgreSQL (started by globalSetup), and fresh databases on it for tests. */
import { inject } from "vitest"
import * as TestPostgres from "@warren/kv/TestPostgres"
import * as PgBackend from "@warren/kv/PgBackend"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as PgClient from "@effect/sql-pg/PgClient"
import { KvService, KvStore, StoreConfig } from "@warren/kv"
import { BasicService, PbServer, ServiceRegistry } from "@warren/pb"
import { Context, Effect, Layer, Redacted } from "effect"
import type { TestServer } from "./server.js"
import type { Scope } from "effect"

/** The URL of a fresh database on the project's server, dropped when the scope closes. */
export const freshDatabase: Effect.Effect<string, TestPostgres.TestPostgresError, Scope.Scope> = Effect.suspend(() =>
  TestPostgres.freshDatabase(inject("postgres").url)
)

/** The PostgreSQL backend on a fresh database, as a layer (for the conformance suite). */
export const freshBackendLayer = (options?: Omit<PgBackend.Options, "url">) =>
  Layer.unwrapScoped(Effect.map(freshDatabase, (url) => PgBackend.layer({ ...options, url })))

/**
 * Fills `bucket` with `count` keys `k0000000`, `k0000001`, ... in one statement, each a copy of the object
 * already stored at key `template` of the same bucket (written through the backend, so rows are well formed).
 */
export const seedKeys = (
  url: string,
  bucket: Uint8Array,
  template: Uint8Array,
  count: number
): Effect.Effect<void> =>
  Effect.flatMap(PgClient.PgClient, (sql) =>
    sql`INSERT INTO warren_kv_objects (bucket_type, bucket, key, vclock, content, size)
      SELECT t.bucket_type, t.bucket, convert_to('k' || lpad(i::text, 7, '0'), 'UTF8'), t.vclock, t.content, t.size
      FROM warren_kv_objects t, generate_series(0, ${count - 1}) AS i
      WHERE t.bucket = ${bucket} AND t.key = ${template}`.pipe(Effect.asVoid)).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url) })),
      Effect.provide(Reactivity.layer),
      Effect.orDie
    )

/**
 * A real PB server (KV service plus ping/server-info) on an ephemeral port whose store is PostgreSQL at `url`,
 * chosen the way `warren pb serve` chooses it (`StoreConfig`). Several of these on one URL form a cluster.
 */
export const startPgServer = (
  url: string,
  options?: PgBackend.PoolOptions
): Effect.Effect<TestServer, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const store = StoreConfig.layer({ _tag: "Postgres", options: { ...options, url } })
    const layer = PbServer.layer({ port: 0 }).pipe(
      Layer.merge(
        Layer.mergeAll(KvService.layer, ServiceRegistry.registered(BasicService.registrations(BasicService.make())))
          .pipe(Layer.provideMerge(store))
      ),
      Layer.provideMerge(ServiceRegistry.layer)
    )
    const context = yield* Layer.build(layer)
    return {
      port: Context.get(context, PbServer.PbServer).address.port,
      store: Context.get(context, KvStore.KvStore)
    }
  })

/** Rows of one query on the database at `url` (for checks that look under the backend). */
export const query = <A extends object>(url: string, text: string): Effect.Effect<ReadonlyArray<A>> =>
  Effect.flatMap(PgClient.PgClient, (sql) => sql.unsafe<A>(text)).pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(url) })),
    Effect.provide(Reactivity.layer),
    Effect.orDie
  )
