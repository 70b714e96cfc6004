// The RPC load generator. It hosts one contender's client (so its CPU time and RSS are the client's cost), keeps
// `concurrency` requests in flight, warms up, then measures for `durationMs`.
import { randomBytes } from "node:crypto"
import net from "node:net"
import { performance } from "node:perf_hooks"
import { Readable } from "node:stream"
import { childArgs, failChild } from "../lib/child.mjs"
import { cpuMicros, Histogram } from "../lib/stats.mjs"

const { url, queue, contender, concurrency, payloadSize, warmupMs, durationMs, engine } = childArgs()

const sameBytes = (a, b) =>
  a !== undefined && a !== null && a.byteLength === b.byteLength &&
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

/**
 * The client's own share of a sequential round trip (concurrency 1): the time from a reply's bytes arriving on a
 * socket to the next request's bytes being written, averaged while `on`. The rest of the round trip (broker, echo
 * server, loopback) is `outside`. Both read every TCP socket of the process (a contender has one), through
 * `Readable.prototype.push` (Node's socket read path) and `net.Socket.prototype._writeGeneric` (its write and
 * writev path); when Node lacks the latter, nothing is measured.
 */
const watchTurnaround = () => {
  const watch = { on: false, client: 0, outside: 0, turns: 0, lastRead: 0, lastWrite: 0 }
  const writeGeneric = net.Socket.prototype._writeGeneric
  if (typeof writeGeneric !== "function") return undefined
  const push = Readable.prototype.push
  Readable.prototype.push = function(chunk, encoding) {
    if (watch.on && chunk !== null && this instanceof net.Socket) {
      const now = performance.now()
      if (watch.lastWrite !== 0) {
        watch.outside += now - watch.lastWrite
        watch.turns++
        watch.lastWrite = 0
      }
      watch.lastRead = now
    }
    return push.call(this, chunk, encoding)
  }
  net.Socket.prototype._writeGeneric = function(...args) {
    if (watch.on) {
      const now = performance.now()
      if (watch.lastRead !== 0) {
        watch.client += now - watch.lastRead
        watch.lastRead = 0
      }
      watch.lastWrite = now
    }
    return writeGeneric.apply(this, args)
  }
  return watch
}

try {
  const turnaround = concurrency === 1 ? watchTurnaround() : undefined
  const mod = await import(`./contenders/${contender}.mjs`)
  const client = await mod.open({ url, queue, engine })
  const payload = randomBytes(payloadSize)
  // one request first: a broken contender fails here rather than in the middle of the measurement
  if (!sameBytes(await client.request(payload), payload)) throw new Error("the echo reply differs from the request")

  const histogram = new Histogram()
  let measuring = false
  const control = { stopping: false }
  let completed = 0
  let mismatches = 0
  /** Replies since the load started, warm-up included (for the first second's throughput). */
  let answered = 0
  /** Called by the workers after every reply, with the time the request was sent (performance.now()). */
  const onReply = (t0, reply) => {
    const elapsed = performance.now() - t0
    if (!sameBytes(reply, payload)) mismatches++
    answered++
    if (measuring) {
      histogram.record(elapsed * 1e6)
      completed++
    }
  }
  // A contender may drive the loop itself (warren runs its workers as Effect fibers, as an Effect program would);
  // otherwise `concurrency` async loops await `request` one after the other.
  const workers = client.runWorkers !== undefined
    ? client.runWorkers({ concurrency, payload, control, onReply })
    : Promise.all(Array.from({ length: concurrency }, async () => {
      while (!control.stopping) {
        const t0 = performance.now()
        onReply(t0, await client.request(payload))
      }
    }))

  // The first second of load shows what a freshly started process gets before V8 has optimized its hot code.
  const loadStart = performance.now()
  let firstSecond = NaN
  const firstSecondTimer = setTimeout(() => {
    firstSecond = answered / ((performance.now() - loadStart) / 1000)
  }, 1000)
  await new Promise((resolve) => setTimeout(resolve, warmupMs))
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  measuring = true
  if (turnaround !== undefined) turnaround.on = true
  await new Promise((resolve) => setTimeout(resolve, durationMs))
  measuring = false
  if (turnaround !== undefined) turnaround.on = false
  const cpu1 = process.cpuUsage()
  const elapsedMs = performance.now() - t0
  const count = completed
  const rss = process.memoryUsage().rss
  clearTimeout(firstSecondTimer)
  control.stopping = true
  await workers
  await client.close()
  if (mismatches > 0) throw new Error(`${mismatches} echo replies differed from their requests`)
  const cpu = cpuMicros(cpu0, cpu1)
  process.send({
    type: "result",
    result: {
      requests: count,
      seconds: elapsedMs / 1000,
      throughput: count / (elapsedMs / 1000),
      p50Ms: histogram.quantile(0.5) / 1e6,
      p99Ms: histogram.quantile(0.99) / 1e6,
      cpuMs: cpu / 1000,
      cpuUsPerReq: cpu / count,
      cpuUtil: cpu / 1000 / elapsedMs,
      rssMB: rss / 1048576,
      firstSecondThroughput: firstSecond,
      turnaroundUs: turnaround !== undefined && turnaround.turns > 0
        ? turnaround.client * 1000 / turnaround.turns
        : null,
      outsideUs: turnaround !== undefined && turnaround.turns > 0 ? turnaround.outside * 1000 / turnaround.turns : null
    }
  })
  setTimeout(() => process.exit(0), 20)
} catch (error) {
  failChild(error)
}
