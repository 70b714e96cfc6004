// A warren PB server with the KV service over the embedded store: in memory only (`sync` "memory", today's store
// without a data file) or with a data file and write-ahead log under `sync` always / interval / none. Reports the
// log's counters (fsyncs, records) with its stats. With `url` (`--store postgres`), the store is PostgreSQL at that
// URL instead (`StoreConfig`, as `warren pb serve --store` chooses it), and the log's counters stay 0.
import { mkdtempSync, rmSync } from "node:fs"
import { join } from "node:path"
import { childArgs, failChild, NotAvailable } from "../lib/child.mjs"
import { serveStats } from "../pb/stats-endpoint.mjs"

const { port = 0, sync, dataDir, syncInterval, url, maxConnections } = childArgs()

try {
  const kv = await import("@warren/kv").catch((error) => {
    throw new NotAvailable(`@warren/kv could not be loaded (${error.message}); run tsc -b`)
  })
  const { EmbeddedBackend, KvService, KvStore, StoreConfig } = kv
  if (EmbeddedBackend?.metrics === undefined) throw new NotAvailable("@warren/kv has no write-ahead log yet")
  const { PbServer, ServiceRegistry } = await import("@warren/pb")
  const { Effect, Fiber, Layer, Metric } = await import("effect")

  const dir = sync === "memory" || url !== undefined ? undefined : mkdtempSync(join(dataDir, "kv-bench-"))
  const options = dir === undefined ? {} : { dataFile: join(dir, "kv.snapshot"), sync, syncInterval }
  const counters = { fsyncs: 0, records: 0 }
  const readCounters = Effect.gen(function*() {
    counters.fsyncs = Number((yield* Metric.value(EmbeddedBackend.metrics.fsyncs)).count)
    counters.records = Number((yield* Metric.value(EmbeddedBackend.metrics.records)).count)
  })

  const program = Effect.gen(function*() {
    const server = yield* PbServer.PbServer
    process.send({ type: "ready", port: server.address.port })
    return yield* Effect.forever(Effect.zipRight(readCounters, Effect.sleep("100 millis")))
  }).pipe(
    Effect.provide(PbServer.layer({ host: "127.0.0.1", port }).pipe(
      Layer.provide(KvService.layer.pipe(Layer.provide(
        url === undefined
          ? KvStore.layer(options)
          : StoreConfig.layer({ _tag: "Postgres", options: { url, maxConnections } })
      ))),
      Layer.provideMerge(ServiceRegistry.layer)
    ))
  )
  // The benchmark's own top-level fiber: this script is its only supervisor (stopped through serveStats).
  const fiber = Effect.runFork(program)
  fiber.addObserver((exit) => {
    if (exit._tag === "Failure") failChild(new Error(`server stopped: ${String(exit.cause)}`))
  })
  serveStats(() => ({ ...counters }), async () => {
    await Effect.runPromise(Fiber.interrupt(fiber))
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })
} catch (error) {
  failChild(error)
}
