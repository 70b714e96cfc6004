/**
 * The services `warren pb serve` registers. Add a service by appending its registrations here (the Effect may build
 * resources in the server's scope, e.g. a store the service uses).
 */
import { KvService, KvStore } from "@warren/kv"
import { BasicService } from "@warren/pb"
import type { ServiceRegistry } from "@warren/pb"
import * as Effect from "effect/Effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { CliFailure } from "../internal/common.js"

/** The KV store's settings from the command line (each flag falls back to its environment variable). */
export interface KvSettings extends KvStore.Options {
  /**
   * When a write is durable: `always` (fsync before the reply), `interval` (every `syncInterval`), `none` (the OS
   * decides). The store's `sync` option of the durable store (h/kv); ignored by a store without it.
   */
  readonly sync?: "always" | "interval" | "none" | undefined
  readonly syncInterval?: KvStore.Options["snapshotInterval"]
}

/**
 * The Riak KV service (codes 9..18) over a store with `settings`. The store lives in the server's scope, so stopping
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
    const store = yield* KvStore.make(settings)
    yield* Effect.logInfo(
      dataFile === undefined
        ? "KV store: in memory only (--data-file or WARREN_DATA_FILE keeps objects across restarts)"
        : `KV store: snapshot file ${dataFile}`
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
