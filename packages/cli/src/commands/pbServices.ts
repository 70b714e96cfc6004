/**
 * The services `warren pb serve` registers. Add a service by appending its registrations here (the Effect may build
 * resources in the server's scope, e.g. a store the service uses).
 */
import { KvService, KvStore } from "@warren/kv"
import { BasicService } from "@warren/pb"
import type { ServiceRegistry } from "@warren/pb"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"

/**
 * The Riak KV service (codes 9..18) over an in-memory store configured from the environment (`KvStore.config`:
 * `WARREN_DATA_FILE`, `WARREN_KV_MAX_BYTES`, `WARREN_KV_SNAPSHOT_INTERVAL`). The store lives in the server's scope,
 * so stopping the server writes the snapshot. A store that cannot start (bad setting, damaged snapshot) stops the
 * command with that reason.
 */
const kvRegistrations = (
  overrides: PbServicesOptions
): Effect.Effect<ReadonlyArray<ServiceRegistry.Registration>, never, Scope.Scope> =>
  Effect.gen(function*() {
    // `--data-file` acts exactly as WARREN_DATA_FILE would (so the snapshot interval rules stay KvStore.config's).
    const options = yield* overrides.dataFile === undefined
      ? KvStore.config
      : Effect.withConfigProvider(
        KvStore.config,
        ConfigProvider.orElse(
          ConfigProvider.fromMap(new Map([["WARREN_DATA_FILE", overrides.dataFile]])),
          () => ConfigProvider.fromEnv()
        )
      )
    const dataFile = options.dataFile
    if (dataFile !== undefined) {
      // The snapshot is written on stop: create its directory now, so a missing one fails the start, not the stop.
      yield* Effect.try({
        try: () => NodeFs.mkdirSync(NodePath.dirname(NodePath.resolve(dataFile)), { recursive: true }),
        catch: (cause) => new Error(`cannot create the directory of ${dataFile}: ${String(cause)}`)
      })
    }
    const store = yield* KvStore.make(options)
    yield* Effect.logInfo(
      options.dataFile === undefined
        ? "KV store: in memory only (set WARREN_DATA_FILE to keep objects across restarts)"
        : `KV store: snapshot file ${options.dataFile}`
    )
    const service = yield* Effect.provideService(KvService.make, KvStore.KvStore, store)
    return KvService.registrations(service)
  }).pipe(
  Effect.orDieWith((error) =>
    new Error(`KV store could not start: ${error instanceof Error ? error.message : String(error)}`)
  )
)

/** Settings of the served services that the command line may override. */
export interface PbServicesOptions {
  /** The KV snapshot file (overrides `WARREN_DATA_FILE`). */
  readonly dataFile?: string
}

/** The registrations of every service the command serves (built when the server starts). */
export const pbServices = (
  options: PbServicesOptions = {}
): Effect.Effect<ReadonlyArray<ServiceRegistry.Registration>, never, Scope.Scope> =>
  Effect.map(kvRegistrations(options), (kv) => [...BasicService.registrations(BasicService.make()), ...kv])
