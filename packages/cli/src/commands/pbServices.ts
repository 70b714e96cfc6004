/**
 * The services `warren pb serve` registers. Add a service by appending its registrations here (the Effect may build
 * resources in the server's scope, e.g. a store the service uses).
 */
import { KvService, KvStore, PgBackend, StoreConfig } from "@warren/kv"
import { BasicService } from "@warren/pb"
import type { ServiceRegistry } from "@warren/pb"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { CliFailure } from "../internal/common.js"

/** The KV store's settings from the command line (each flag falls back to its environment variable). */
export interface KvSettings extends KvStore.Options {
  /** `embedded` (or unset): the store in this process; a `postgres://` URL: the PostgreSQL backend. */
  readonly store?: string | undefined
}

/** The store the settings name, in the server's scope: embedded, or PostgreSQL with `PgBackend.poolConfig`. */
const makeStore = (settings: KvSettings) =>
  settings.store === undefined || settings.store === "embedded"
    ? KvStore.make(settings)
    : Effect.gen(function*() {
      const pool = yield* PgBackend.poolConfig
      const choice: StoreConfig.Choice = { _tag: "Postgres", options: { ...pool, url: Redacted.make(settings.store!) } }
      const context = yield* Layer.build(StoreConfig.layer(choice))
      return Context.get(context, KvStore.KvStore)
    })

/**
 * The Riak KV service (codes 9..22, 29..30) over a store with `settings`. The store lives in the server's scope, so stopping
 * the server writes the snapshot. A store that cannot start (damaged snapshot, ...) fails with its typed error.
 */
const kvRegistrations = (settings: KvSettings) =>
  Effect.gen(function*() {
    const dataFile = settings.dataFile
    if (dataFile !== undefined) {
      // The snapshot is written on stop: create its directory now, so a missing one fails the start, not the stop.
      yield* Effect.try({
        try: () => NodeFs.mkdirSync(NodePath.dirname(NodePath.resolve(dataFile)), { recursive: true }),
        catch: (cause) => new CliFailure({ message: `cannot create the directory of ${dataFile}`, cause })
      })
    }
    const store = yield* makeStore(settings)
    yield* Effect.logInfo(
      settings.store !== undefined && settings.store !== "embedded"
        ? "KV store: PostgreSQL (--store / WARREN_KV_URL)"
        : dataFile === undefined
        ? "KV store: in memory only (--data-file or WARREN_DATA_FILE keeps objects across restarts)"
        : `KV store: snapshot file ${dataFile} with its write-ahead log (sync ${settings.sync ?? "always"})`
    )
    const service = yield* Effect.provideService(KvService.make, KvStore.KvStore, store)
    return KvService.registrations(service)
  })

/** The registrations of every service the command serves (built when the server starts). */
export const pbServices = (settings: KvSettings = {}) =>
  Effect.map(
    kvRegistrations(settings),
    (kv): ReadonlyArray<ServiceRegistry.Registration> => [...BasicService.registrations(BasicService.make()), ...kv]
  )
