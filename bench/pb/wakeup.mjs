// The PB connection's own CPU cost per wake-up, in one process and without a network: one connection of
// @warren/pb's server on a fake socket, its 'data' listener called with a chunk of N frames, again and again. What
// it measures is everything warren does for a read (framing, the fiber's wake-up and run, dispatch, the service,
// the reply's framing, metrics, pacing), without the kernel's and Node's stream costs that the bench's servers
// share. Much steadier than the bench on a busy machine (no second process to be scheduled next to).
//
//   node bench/pb/wakeup.mjs [--engine packages/pb/dist0]... [--frames 1] [--wakes 300000] [--code 1|200|202] [--count]
//     [--connections 1]
//
// --code: 1 ping (basic service), 200 a 1 KiB echo (plain result), 202 a 256 B echo whose result is an Effect that
// must run (`Effect.sync`); with SUCCEED=1 it is `Effect.succeed` (an Exit). --count counts the Effect run-loop
// ops per wake-up (by wrapping the runtime's op handlers: slower, for counting only). Prints the min and median
// over 7 timed rounds (after one warm-up round), of wall and of CPU time. With --engine given more than once, each
// build gets its own connection in this one process and the rounds alternate between them (--rounds per build,
// default 15, of --wakes / 5): an A/B that a busy machine disturbs less than runs in separate processes (both
// builds see the same moments), though its absolute figures run higher (Effect's call sites see both builds).
import { EventEmitter } from "node:events"
import { resolve } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const option = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? fallback : process.argv[at + 1]
}
const root = fileURLToPath(new URL("../../", import.meta.url))
const engines = process.argv.flatMap((arg, i) => arg === "--engine" ? [process.argv[i + 1]] : [])
if (engines.length === 0) engines.push("packages/pb/dist")
const frames = Number(option("frames", "1"))
const wakes = Number(option("wakes", "300000"))
const code = Number(option("code", "1"))
const counting = process.argv.includes("--count")
// --connections N: N connections per build, woken in turn (one chunk each), as the bench's 64x1 workload wakes them
const connectionCount = Number(option("connections", "1"))

const { Effect, Either, Exit, Scope } = await import("effect")

const ops = {}
if (counting) {
  const { FiberRuntime } = await import(
    pathToFileURL(`${root}node_modules/effect/dist/esm/internal/fiberRuntime.js`).href
  )
  for (
    const op of [
      "Sync",
      "Success",
      "Failure",
      "Commit",
      "OnSuccess",
      "OnFailure",
      "OnSuccessAndFailure",
      "Async",
      "Iterator",
      "WithRuntime",
      "Yield",
      "While",
      "UpdateRuntimeFlags",
      "Tag",
      "Left",
      "Right",
      "Some",
      "None"
    ]
  ) {
    const handler = FiberRuntime.prototype[op]
    if (typeof handler !== "function") continue
    FiberRuntime.prototype[op] = function(x) {
      ops[op] = (ops[op] ?? 0) + 1
      return handler.call(this, x)
    }
  }
}

/** Enough of a `net.Socket` for a connection: writes are counted and dropped, nothing blocks. */
class FakeSocket extends EventEmitter {
  remoteAddress = "127.0.0.1"
  remotePort = 1
  destroyed = false
  closed = false
  writableLength = 0
  writableNeedDrain = false
  written = 0
  write(bytes) {
    this.written += bytes.length
    return true
  }
  cork() {}
  uncork() {}
  pause() {}
  resume() {}
  end() {
    this.closed = true
    this.emit("close")
  }
  destroy() {
    this.destroyed = true
    this.closed = true
  }
}

// Read once: a `process.env` read per request cost ~0.2 µs, more than some of what this script compares.
const succeed = process.env.SUCCEED !== undefined && process.env.SUCCEED !== ""
const echoCode = Uint8Array.of(201)
const effectCode = Uint8Array.of(203)

/** One connection of the build in `dist` on a fake socket: its `data` listener. */
const setUp = (dist) =>
  Effect.gen(function*() {
    const base = pathToFileURL(`${resolve(root, dist)}/`).href
    const { makeContext, serve } = yield* Effect.promise(() => import(base + "internal/listener.js"))
    const { ByteBudget } = yield* Effect.promise(() => import(base + "internal/budget.js"))
    const { BasicService, PbService, ServiceRegistry } = yield* Effect.promise(() => import(base + "index.js"))
    const echo = PbService.make({
      name: "echo",
      init: () => undefined,
      decode: (_code, body) => PbService.decoded(body),
      encode: (body) => Either.right([echoCode, body]),
      process: (body, state) => PbService.reply(body, state)
    })
    const echoEffect = PbService.make({
      name: "echo_effect",
      init: () => undefined,
      decode: (_code, body) => PbService.decoded(body),
      encode: (body) => Either.right([effectCode, body]),
      process: (body, state) =>
        succeed
          ? Effect.succeed(PbService.reply(body, state))
          : Effect.sync(() => PbService.reply(body, state))
    })
    const registry = yield* ServiceRegistry.make
    yield* registry.registerAll([
      ...BasicService.registrations(BasicService.make()),
      ServiceRegistry.registration(echo, 200),
      ServiceRegistry.registration(echoEffect, 202)
    ])
    const config = {
      nodelay: true,
      keepalive: false,
      maxFrameSize: 1 << 20,
      maxConnections: connectionCount + 10,
      idleTimeout: undefined,
      streamIdleTimeout: undefined,
      mailboxCapacity: 64,
      flushBytes: 64 * 1024,
      readBufferBytes: 1 << 20,
      closeTimeout: "1 second",
      security: undefined
    }
    const server = makeContext(config, registry, new ByteBudget(1 << 30), yield* Effect.clock)
    const scope = yield* Effect.scope
    const listeners = []
    for (let id = 1; id <= connectionCount; id++) {
      const socket = new FakeSocket()
      yield* Effect.forkIn(
        Effect.withScheduler(Scope.extend(serve(server, id, socket), scope), server.scheduler),
        scope
      )
      yield* Effect.sleep("1 millis")
      listeners.push(socket.listeners("data")[0])
    }
    return listeners
  })

const program = Effect.gen(function*() {
  const listeners = []
  for (const dist of engines) listeners.push(yield* setUp(dist))
  const body = Buffer.alloc(code === 200 ? 1024 : code === 202 ? 256 : 0, 0x61)
  const one = Buffer.alloc(5 + body.length)
  one.writeUInt32BE(1 + body.length, 0)
  one[4] = code
  body.copy(one, 5)
  const chunk = Buffer.concat(Array(frames).fill(one))
  const ab = engines.length > 1
  const rounds = ab ? Number(option("rounds", "15")) : 7
  const perRound = ab ? Math.max(1, Math.round(wakes / 5)) : wakes
  const wall = engines.map(() => [])
  const cpuTime = engines.map(() => [])
  for (let round = 0; round <= rounds; round++) {
    // alternate which build goes first
    const order = round % 2 === 0 ? engines.map((_, i) => i) : engines.map((_, i) => engines.length - 1 - i)
    for (const e of order) {
      const onData = listeners[e]
      const n = onData.length
      for (const k in ops) ops[k] = 0
      const cpu0 = process.cpuUsage()
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < perRound; i++) onData[i % n](chunk.subarray(0))
      const t1 = process.hrtime.bigint()
      const cpu = process.cpuUsage(cpu0)
      if (round > 0) {
        wall[e].push(Number(t1 - t0) / perRound / frames)
        cpuTime[e].push((cpu.user + cpu.system) * 1000 / perRound / frames)
      }
    }
  }
  engines.forEach((dist, e) => {
    const w = wall[e].sort((a, b) => a - b)
    const c = cpuTime[e].sort((a, b) => a - b)
    // CPU time as well as wall time: on a shared machine the process is also descheduled, which only wall time sees.
    console.log(
      `${dist} code ${code} x${frames}: min ${w[0].toFixed(0)} median ${w[w.length >> 1].toFixed(0)} ns/request` +
        ` (CPU min ${c[0].toFixed(0)} median ${c[c.length >> 1].toFixed(0)})`
    )
  })
  if (counting) {
    const perWake = Object.entries(ops).filter(([, n]) => n > 0).map(([op, n]) => `${op} ${(n / perRound).toFixed(2)}`)
    console.log(`run-loop ops per wake-up: ${perWake.join(", ")}`)
  }
})

await Effect.runPromise(Effect.scoped(program))
