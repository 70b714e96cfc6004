// The RPC load generator. It hosts one contender's client (so its CPU time and RSS are the client's cost), keeps
// `concurrency` requests in flight, warms up, then measures for `durationMs`.
import { randomBytes } from "node:crypto"
import { performance } from "node:perf_hooks"
import { childArgs, failChild } from "../lib/child.mjs"
import { cpuMicros, Histogram } from "../lib/stats.mjs"

const { url, queue, contender, concurrency, payloadSize, warmupMs, durationMs } = childArgs()

const sameBytes = (a, b) =>
  a !== undefined && a !== null && a.byteLength === b.byteLength &&
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)

try {
  const mod = await import(`./contenders/${contender}.mjs`)
  const client = await mod.open({ url, queue })
  const payload = randomBytes(payloadSize)
  // one request first: a broken contender fails here rather than in the middle of the measurement
  if (!sameBytes(await client.request(payload), payload)) throw new Error("the echo reply differs from the request")

  const histogram = new Histogram()
  let measuring = false
  const control = { stopping: false }
  let completed = 0
  let mismatches = 0
  /** Called by the workers after every reply, with the time the request was sent (performance.now()). */
  const onReply = (t0, reply) => {
    const elapsed = performance.now() - t0
    if (!sameBytes(reply, payload)) mismatches++
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

  await new Promise((resolve) => setTimeout(resolve, warmupMs))
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  measuring = true
  await new Promise((resolve) => setTimeout(resolve, durationMs))
  measuring = false
  const cpu1 = process.cpuUsage()
  const elapsedMs = performance.now() - t0
  const count = completed
  const rss = process.memoryUsage().rss
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
      rssMB: rss / 1048576
    }
  })
  setTimeout(() => process.exit(0), 20)
} catch (error) {
  failChild(error)
}
