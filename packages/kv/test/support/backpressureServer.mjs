// A PB server with the KV service in a process of its own, so a test can measure its RSS. Seeds bucket `b`:
// key `v` (1 MiB) and `keys` keys of 1 KiB names in bucket `many`. Talks to the test over IPC:
// { type: "rss" } -> { type: "rss", rss, buffered, connections, blocked (connections whose writes are blocked) }. Options (JSON in argv[2]) go to PbServer.
import { KvService, KvStore } from "@warren/kv"
import { BasicService, PbServer, ServiceRegistry } from "@warren/pb"
import { Context, Effect, Layer } from "effect"

const { keys = 0, ...options } = JSON.parse(process.argv[2] ?? "{}")
const enc = (s) => new TextEncoder().encode(s)

const program = Effect.gen(function*() {
  const layer = PbServer.layer({ port: 0, ...options }).pipe(
    Layer.merge(
      Layer.mergeAll(KvService.layer, ServiceRegistry.registered(BasicService.registrations(BasicService.make())))
    ),
    Layer.provideMerge(KvStore.layer({ maxBytes: 1024 * 1024 * 1024 })),
    Layer.provideMerge(ServiceRegistry.layer)
  )
  const context = yield* Layer.build(layer)
  const server = Context.get(context, PbServer.PbServer)
  const store = Context.get(context, KvStore.KvStore)
  yield* store.put({ bucket: enc("b") }, enc("v"), { value: new Uint8Array(1024 * 1024).fill(120) })
  for (let i = 0; i < keys; i++) {
    yield* store.put({ bucket: enc("many") }, enc(String(i).padStart(1024, "k")), { value: enc("x") })
  }
  globalThis.gc?.()
  process.on("message", (message) => {
    if (message.type !== "rss") return
    Effect.runPromise(Effect.all([server.connections, server.bufferedBytes])).then(([connections, buffered]) => {
      const blocked = connections.filter((c) => c.writeBlocked).length
      process.send({ type: "rss", rss: process.memoryUsage().rss, buffered, connections: connections.length, blocked })
    })
  })
  process.send({ type: "ready", port: server.address.port })
  return yield* Effect.never
})

Effect.runPromise(Effect.scoped(program)).catch((error) => {
  console.error(error)
  process.exit(1)
})
process.on("disconnect", () => process.exit(0))
