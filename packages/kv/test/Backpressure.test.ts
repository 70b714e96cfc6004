// Backpressure on a real PbServer + KvService, in a server process of its own (its RSS is measured over IPC):
// clients that never read their replies, and clients that announce huge frames and send them slowly.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"

const MiB = 1024 * 1024

interface ServerProcess {
  readonly port: number
  readonly stats: Effect.Effect<
    { readonly rss: number; readonly buffered: number; readonly connections: number; readonly blocked: number }
  >
}

/** The server process (see support/backpressureServer.mjs), killed with the scope. */
const startServerProcess = (options: Record<string, unknown>) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        ChildProcess.fork(new URL("./support/backpressureServer.mjs", import.meta.url), [JSON.stringify(options)], {
          execArgv: ["--expose-gc"],
          stdio: ["ignore", "inherit", "inherit", "ipc"]
        })
      ),
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
    const port = yield* Effect.async<number, Error>((resume) => {
      child.once("message", (message: { port: number }) => resume(Effect.succeed(message.port)))
      child.once("exit", (code) => resume(Effect.fail(new Error(`server process exited (${code})`))))
    })
    // One request at a time (the replies carry no id).
    const lock = yield* Effect.makeSemaphore(1)
    const stats = lock.withPermits(1)(
      Effect.async<{ rss: number; buffered: number; connections: number; blocked: number }>((resume) => {
        child.once("message", (message: { rss: number; buffered: number; connections: number; blocked: number }) =>
          resume(Effect.succeed(message)))
        child.send({ type: "rss" })
      })
    )
    return { port, stats } satisfies ServerProcess
  })

const open = (port: number) =>
  Effect.acquireRelease(
    Effect.async<Net.Socket, Error>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      socket.once("connect", () => resume(Effect.succeed(socket)))
      socket.once("error", (error) => resume(Effect.fail(error)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.tap((socket) => Effect.sync(() => socket.on("error", () => {}))))

/** Pings on its own connection for `count` round trips; the latencies in ms. */
const pings = (port: number, count: number) =>
  Effect.scoped(Effect.gen(function*() {
    const socket = yield* open(port)
    const latencies: Array<number> = []
    for (let i = 0; i < count; i++) {
      const started = performance.now()
      yield* Effect.async<void, Error>((resume) => {
        let got = 0
        const onData = (chunk: Buffer) => {
          got += chunk.length
          if (got >= 5) {
            socket.off("data", onData)
            resume(Effect.void)
          }
        }
        socket.on("data", onData)
        socket.once("close", () => resume(Effect.fail(new Error("ping connection closed"))))
        socket.write(Uint8Array.of(0, 0, 0, 1, 1))
      })
      latencies.push(performance.now() - started)
    }
    return latencies
  }))

const p99 = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!
}

/**
 * Polls the server over IPC until `check` holds; how long it took, in ms. Polls are paced (2 ms apart): a busy IPC
 * loop would take a core from the server it measures on a 2-core machine.
 */
const until = (
  server: ServerProcess,
  check: (s: { rss: number; buffered: number; connections: number; blocked: number }) => boolean
) =>
  Effect.gen(function*() {
    const started = performance.now()
    while (!check(yield* server.stats)) {
      yield* Effect.sleep("2 millis")
    }
    return performance.now() - started
  })

/** The 11-byte RpbGetReq of bucket `b`, key `v` from the reproduction. */
const getFrame = Uint8Array.of(0x00, 0x00, 0x00, 0x07, 0x09, 0x0a, 0x01, 0x62, 0x12, 0x01, 0x76)
/** RpbListKeysReq of bucket `many`. */
const listKeysFrame = Uint8Array.of(0, 0, 0, 7, 17, 0x0a, 4, 0x6d, 0x61, 0x6e, 0x79)

describe("backpressure (server in its own process)", () => {
  it.scopedLive(
    "a client that never reads 1,500 gets of a 1 MiB object: bounded memory, others served, disconnect seen",
    () =>
      Effect.gen(function*() {
        const server = yield* startServerProcess({})
        const before = yield* server.stats
        const flooder = yield* open(server.port)
        flooder.pause()
        flooder.write(Buffer.concat(Array.from({ length: 1500 }, () => getFrame)))
        // the server is held back by the flooder: its writes are blocked
        yield* until(server, (s) => s.blocked === 1)
        const latencies = yield* pings(server.port, 300)
        const during = yield* server.stats
        assert.isBelow(
          during.rss - before.rss,
          64 * MiB,
          `RSS grew by ${((during.rss - before.rss) / MiB).toFixed(1)} MiB`
        )
        assert.isBelow(p99(latencies), 100, `ping p99 ${p99(latencies).toFixed(1)} ms`)
        flooder.destroy()
        const seen = yield* until(server, (s) => s.connections === 0)
        assert.isBelow(seen, 1000)
        assert.strictEqual((yield* server.stats).buffered, 0)
      }),
    60_000
  )

  it.scopedLive(
    "clients that never read a big list keys: bounded memory, others served, disconnect seen",
    () =>
      Effect.gen(function*() {
        const server = yield* startServerProcess({ keys: 16000 })
        const before = yield* server.stats
        const listers = yield* Effect.forEach(Array.from({ length: 8 }), () => open(server.port))
        for (const lister of listers) {
          lister.pause()
          lister.write(listKeysFrame)
        }
        // 16 MiB of key names each: more than the socket buffers take, so their writes block
        yield* until(server, (s) => s.blocked === 8)
        const latencies = yield* pings(server.port, 300)
        const during = yield* server.stats
        assert.isBelow(
          during.rss - before.rss,
          64 * MiB,
          `RSS grew by ${((during.rss - before.rss) / MiB).toFixed(1)} MiB`
        )
        assert.isBelow(p99(latencies), 100, `ping p99 ${p99(latencies).toFixed(1)} ms`)
        for (const lister of listers) lister.destroy()
        const seen = yield* until(server, (s) => s.connections === 0)
        assert.isBelow(seen, 1000)
      }),
    60_000
  )

  it.scopedLive(
    "8 slow 64 MiB frames: memory follows what arrived, and stops at the byte budget",
    () =>
      Effect.gen(function*() {
        const budget = 24 * MiB
        const server = yield* startServerProcess({ maxBufferedBytes: budget })
        const before = yield* server.stats
        const header = Buffer.alloc(4)
        header.writeUInt32BE(64 * MiB)
        const slow = yield* Effect.forEach(Array.from({ length: 8 }), () => open(server.port))
        const chunk = Buffer.alloc(64 * 1024, 7)
        // Each client sends its header, then 4 MiB of body in 64 KiB writes, each after the last was taken.
        const send = (socket: Net.Socket) =>
          Effect.async<void>((resume) => {
            let sent = 0
            const next = (): void => {
              if (sent >= 4 * MiB || socket.destroyed) return resume(Effect.void)
              sent += chunk.length
              if (socket.write(chunk)) setImmediate(next)
              else socket.once("drain", next)
            }
            socket.write(header)
            next()
          })
        // The first 16 MiB (4 clients) fit in the budget: all of it arrives, and memory follows it.
        yield* Effect.forEach(slow.slice(0, 4), send, { concurrency: "unbounded", discard: true })
        yield* until(server, (s) => s.buffered >= 16 * MiB)
        const half = yield* server.stats
        assert.isBelow(
          half.rss - before.rss,
          16 * MiB + 24 * MiB,
          `RSS grew by ${((half.rss - before.rss) / MiB).toFixed(1)} MiB`
        )
        // The other 16 MiB do not: reading stops at the budget (their senders are left waiting for the kernel).
        yield* Effect.forkScoped(Effect.forEach(slow.slice(4), send, { concurrency: "unbounded", discard: true }))
        yield* until(server, (s) => s.buffered >= budget)
        const full = yield* server.stats
        assert.isBelow(full.buffered, budget + 8 * 64 * 1024)
        assert.isBelow(
          full.rss - before.rss,
          budget + 24 * MiB,
          `RSS grew by ${((full.rss - before.rss) / MiB).toFixed(1)} MiB`
        )
        // Nothing was dropped or closed; when the slow clients go, the budget is free again and pings are served.
        assert.strictEqual(full.connections, 8)
        for (const socket of slow) socket.destroy()
        yield* until(server, (s) => s.connections === 0 && s.buffered === 0)
        const after = yield* pings(server.port, 10)
        assert.strictEqual(after.length, 10)
      }),
    60_000
  )
})
