/**
 * `npm run soak [-- --minutes N]` (default 10): mixed RPC and PB load for N minutes, then heap and RSS figures.
 *
 * RPC: warren's RpcClient calls an RpcServer echo on a private RabbitMQ node, in this process. PB: connections do
 * KV puts and gets (a bounded key space, so the store stops growing) against a `warren pb serve` child. Every 5 s
 * this process's heap (after a GC: run with --expose-gc) and RSS and the server's RSS are sampled. After warm-up
 * (the first fifth of the run, at least 2 minutes or half of a shorter run) they must stay flat: at most 10 % growth
 * from the window just after warm-up (a fifth of the rest) to the last such window. Heap after GC is compared by
 * medians; RSS saws up and down with the GC cycles (±15 % here), so RSS is compared by each window's floor (its
 * lowest sample), which is what a leak raises. Both statistics are printed.
 */
import { AmqpConnection, RpcClient, RpcServer } from "@warren/amqp"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import { randomBytes } from "node:crypto"
import { startBroker } from "./Broker.js"
import { connect, delay, frame, getBody, putBody, startPbServer, write } from "./Pb.js"

const args = process.argv.slice(2)
const minutesAt = args.indexOf("--minutes")
const minutes = minutesAt >= 0 ? Number(args[minutesAt + 1]) : 10
if (!(minutes > 0)) throw new Error("--minutes must be a positive number")
const durationMs = minutes * 60_000
const SAMPLE_MS = 5_000
const MAX_GROWTH = 0.1
const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
const gc = (globalThis as { gc?: () => void }).gc

interface Sample {
  readonly t: number
  readonly heap: number
  readonly rss: number
  readonly serverRss: number
  readonly rpc: number
  readonly pb: number
}

const median = (xs: ReadonlyArray<number>) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}
const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

const main = async () => {
  if (gc === undefined) log("no --expose-gc: heap figures include garbage")
  const broker = await startBroker()
  const server = await startPbServer()
  let rpcDone = 0
  let pbDone = 0
  let errors = 0
  let running = true
  try {
    // PB load: 4 connections, put then get over 1,000 keys of 1 KiB.
    const value = randomBytes(1024)
    const pbLoad = Promise.all(Array.from({ length: 4 }, async (_, w) => {
      const c = await connect(server.port, { keep: false })
      let i = 0
      while (running && !c.isClosed()) {
        const key = `soak-${(i * 4 + w) % 1000}`
        await write(c, Buffer.concat([frame(11, putBody("soak", key, value)), frame(9, getBody("soak", key))]))
        const put = await c.next(10_000)
        const get = await c.next(10_000)
        if (put?.code !== 12 || get?.code !== 10) errors++
        pbDone += 2
        i++
        if (i % 50 === 0) await delay(1)
      }
      c.socket.destroy()
    }))
    // RPC load, sampling, in one scope.
    const samples: Array<Sample> = []
    const program = Effect.gen(function*() {
      const connection = yield* AmqpConnection.make({ urls: broker.url, connectionName: "soak" })
      yield* RpcServer.serve({ queue: "soak-echo", concurrency: 8 }, RpcServer.echo).pipe(
        Effect.tap(RpcServer.awaitReady),
        Effect.provideService(AmqpConnection.AmqpConnection, connection)
      )
      const client = yield* RpcClient.make({ name: "soak" }).pipe(
        Effect.provideService(AmqpConnection.AmqpConnection, connection)
      )
      const payload = randomBytes(256)
      const callers = yield* Effect.forEach(Array.from({ length: 8 }), () =>
        Effect.fork(Effect.gen(function*() {
          while (running) {
            const reply = yield* Effect.either(client.request(payload, "soak-echo"))
            if (reply._tag === "Left" || !reply.right.equals(payload)) errors++
            rpcDone++
            if (rpcDone % 100 === 0) yield* Effect.sleep("1 millis")
          }
        })))
      const started = Date.now()
      while (Date.now() - started < durationMs) {
        yield* Effect.sleep(`${SAMPLE_MS} millis`)
        gc?.()
        const memory = process.memoryUsage()
        const sample = {
          t: Date.now() - started,
          heap: memory.heapUsed,
          rss: memory.rss,
          serverRss: server.rss(),
          rpc: rpcDone,
          pb: pbDone
        }
        samples.push(sample)
        log(
          `${(sample.t / 1000).toFixed(0)} s: heap ${MiB(sample.heap)}, rss ${MiB(sample.rss)}, pb serve rss ${
            MiB(sample.serverRss)
          }, ${rpcDone} rpc, ${pbDone} pb, ${errors} errors`
        )
      }
      running = false
      yield* Fiber.joinAll(callers)
    }).pipe(
      Effect.scoped,
      Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)))
    )
    await Effect.runPromise(program)
    await pbLoad

    const warmup = Math.max(durationMs / 5, Math.min(120_000, durationMs / 2))
    const window = (durationMs - warmup) / 5
    const early = samples.filter((s) => s.t > warmup && s.t <= warmup + window)
    const late = samples.filter((s) => s.t > durationMs - window)
    const lines: Array<string> = []
    let failed = false
    const floor = (xs: ReadonlyArray<number>) => Math.min(...xs)
    for (
      const [name, pick, judgeBy] of [
        ["soak process heap (after GC)", (s: Sample) => s.heap, "median"],
        ["soak process RSS", (s: Sample) => s.rss, "floor"],
        ["warren pb serve RSS", (s: Sample) => s.serverRss, "floor"]
      ] as const
    ) {
      const stat = judgeBy === "median" ? median : floor
      const a = stat(early.map(pick))
      const b = stat(late.map(pick))
      const growth = (b - a) / a
      const ok = growth < MAX_GROWTH
      failed ||= !ok
      lines.push(
        `| ${name} | ${judgeBy} | ${MiB(a)} (median ${MiB(median(early.map(pick)))}) | ` +
          `${MiB(b)} (median ${MiB(median(late.map(pick)))}) | ${(growth * 100).toFixed(1)} % | ${
            ok ? "ok" : "**FAIL**"
          } |`
      )
    }
    const last = samples[samples.length - 1]
    const seconds = (last?.t ?? 1) / 1000
    process.stdout.write(
      `\nsoak: ${minutes} min, ${rpcDone} RPC requests (${(rpcDone / seconds).toFixed(0)}/s), ` +
        `${pbDone} PB requests (${(pbDone / seconds).toFixed(0)}/s), ${errors} errors, ${samples.length} samples\n\n` +
        `warm-up ${(warmup / 1000).toFixed(0)} s; windows of ${(window / 1000).toFixed(0)} s\n\n` +
        `| figure | judged by | after warm-up | end | growth | < 10 % |\n|---|---|---|---|---|---|\n` +
        `${lines.join("\n")}\n\n`
    )
    process.exitCode = failed || errors > 0 ? 1 : 0
  } finally {
    running = false
    await server.stop("SIGTERM")
    await broker.stop()
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`soak: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 2
})
