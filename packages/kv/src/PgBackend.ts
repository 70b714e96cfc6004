/**
 * A `KvBackend` on PostgreSQL, so several `warren pb serve` processes behind one load balancer share one
 * store (as Riak nodes of a cluster do). Riak's semantics stay in `KvStore`; this backend stores one row per
 * key and offers an atomic compare-and-set on the vclock, which is what keeps concurrent writers on different
 * servers from losing each other's updates.
 *
 * The schema is applied at start through `@effect/sql`'s migrator (idempotent; safe when servers start
 * together). Requests that cannot reach the database fail with `StorageError` (clients get an
 * `RpbErrorResp`); the pool reconnects on its own when the database returns.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as ParseResult from "effect/ParseResult"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { type Backend, KvBackend } from "./KvBackend.js"
import type { StorageError } from "./KvError.js"
import * as internal from "./internal/pgBackend.js"

/**
 * Options of the PostgreSQL backend.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `postgres://user:password@host:port/database` (libpq URL syntax, `?sslmode=...` included). */
  readonly url: string | Redacted.Redacted<string>
  /** Most pooled connections per server (default 10). */
  readonly maxConnections?: number | undefined
  /** Connections kept open while idle (default 0). */
  readonly minConnections?: number | undefined
  /** How long to wait for a connection, new or from the pool (default 5 seconds). */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Idle connections are closed after this (default 30 seconds). */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** A request with no answer within this fails with `StorageError` (default 10 seconds). */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** How long start-up keeps retrying to connect and migrate (default 30 seconds). */
  readonly startTimeout?: Duration.DurationInput | undefined
  /** Most keys or buckets per listing batch and per listing query (default 1000). */
  readonly listBatchSize?: number | undefined
  /** Most bytes of names per listing batch (default 64 KiB; a single longer name still forms a batch). */
  readonly listBatchBytes?: number | undefined
  /** `application_name` of the connections (default `warren-kv`), as `pg_stat_activity` shows it. */
  readonly applicationName?: string | undefined
}

/**
 * Connects (retrying until `startTimeout`), applies the schema and returns the backend; the pool is closed
 * when the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<Backend, StorageError | ParseResult.ParseError, Scope.Scope> =
  internal.make

/**
 * The backend as a layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<KvBackend, StorageError | ParseResult.ParseError> =>
  Layer.scoped(KvBackend, make(options))

/**
 * Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
 *
 * @since 0.1.0
 * @category predicates
 */
export const isUrl = (url: string): boolean => /^postgres(ql)?:\/\//i.test(url.trim())

/**
 * The options other than the URL.
 *
 * @since 0.1.0
 * @category models
 */
export type PoolOptions = Omit<Options, "url">

/**
 * Pool options from the environment (the URL comes from `WARREN_KV_URL` or `--store`, see `StoreConfig`):
 *
 * - `WARREN_KV_PG_MAX_CONNECTIONS` (default 10), `WARREN_KV_PG_MIN_CONNECTIONS` (default 0);
 * - `WARREN_KV_PG_CONNECT_TIMEOUT`, `WARREN_KV_PG_IDLE_TIMEOUT`, `WARREN_KV_PG_REQUEST_TIMEOUT`,
 *   `WARREN_KV_PG_START_TIMEOUT`: durations such as `5 seconds`.
 *
 * @since 0.1.0
 * @category config
 */
export const poolConfig: Config.Config<PoolOptions> = Config.all({
  maxConnections: Config.option(Config.integer("WARREN_KV_PG_MAX_CONNECTIONS")),
  minConnections: Config.option(Config.integer("WARREN_KV_PG_MIN_CONNECTIONS")),
  connectTimeout: Config.option(Config.duration("WARREN_KV_PG_CONNECT_TIMEOUT")),
  idleTimeout: Config.option(Config.duration("WARREN_KV_PG_IDLE_TIMEOUT")),
  requestTimeout: Config.option(Config.duration("WARREN_KV_PG_REQUEST_TIMEOUT")),
  startTimeout: Config.option(Config.duration("WARREN_KV_PG_START_TIMEOUT"))
}).pipe(Config.map((o): PoolOptions => ({
  maxConnections: Option.getOrUndefined(o.maxConnections),
  minConnections: Option.getOrUndefined(o.minConnections),
  connectTimeout: Option.getOrUndefined(o.connectTimeout),
  idleTimeout: Option.getOrUndefined(o.idleTimeout),
  requestTimeout: Option.getOrUndefined(o.requestTimeout),
  startTimeout: Option.getOrUndefined(o.startTimeout)
})))

/**
 * All options from the environment: `WARREN_KV_URL` (required here) and `poolConfig`.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.all({
  url: Config.redacted("WARREN_KV_URL"),
  pool: poolConfig
}).pipe(Config.map(({ pool, url }): Options => ({ ...pool, url })))

/**
 * The backend as a layer, with options from a `Config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<Options> = config
): Layer.Layer<KvBackend, StorageError | ParseResult.ParseError | ConfigError.ConfigError> =>
  Layer.scoped(KvBackend, Effect.flatMap(options, make))
