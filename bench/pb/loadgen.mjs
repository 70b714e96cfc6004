// The PB load generator (its own process). Mode "load": `connections` sockets, each keeping `depth` requests in
// flight (pipelined; replies come back in order), warm-up then a measured window announced to the parent with
// `mark` messages so it can read the server's CPU time over the same window. Mode "idle": opens `connections`
// sockets, pings once on each (so the server has set the connection up), reports, and holds them until told to stop.
import * as Net from "node:net"
import { performance } from "node:perf_hooks"
import { childArgs, failChild } from "../lib/child.mjs"
import { cpuMicros, Histogram } from "../lib/stats.mjs"
import { frame, frameReader, PING_REQ, PING_RESP } from "./frames.mjs"

const args = childArgs()

const connect = (port) =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port, noDelay: true })
    socket.once("connect", () => {
      socket.setNoDelay(true)
      socket.removeListener("error", reject)
      resolve(socket)
    })
    socket.once("error", reject)
  })

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const load = async ({ port, connections, depth, code, replyCode, bodySize, warmupMs, durationMs }) => {
  const body = Buffer.alloc(bodySize, 0x61)
  const request = frame(code, body)
  // batches[k] = k requests back to back, so refilling k slots is one write
  const batches = Array.from({ length: depth + 1 }, (_, k) => Buffer.concat(Array(k).fill(request)))
  const histogram = new Histogram()
  let measuring = false
  let stopping = false
  let completed = 0
  let unexpected = 0
  let inFlightTotal = 0
  let drained
  const sockets = await Promise.all(Array.from({ length: connections }, () => connect(port)))
  for (const socket of sockets) {
    const sentAt = new Float64Array(depth)
    let head = 0 // oldest in flight
    let inFlight = 0
    const read = frameReader((replyCodeSeen, replyBody) => {
      const now = performance.now()
      if (replyCodeSeen !== replyCode || replyBody.length !== bodySize) unexpected++
      if (measuring) {
        histogram.record((now - sentAt[head]) * 1e6)
        completed++
      }
      head = (head + 1) % depth
      inFlight--
      inFlightTotal--
    })
    const refill = () => {
      const k = depth - inFlight
      if (k === 0 || stopping) return
      const now = performance.now()
      for (let i = 0; i < k; i++) sentAt[(head + inFlight + i) % depth] = now
      inFlight += k
      inFlightTotal += k
      socket.write(batches[k])
    }
    socket.on("data", (chunk) => {
      if (!read(chunk)) throw new Error("zero-length frame from the server")
      if (stopping) {
        if (inFlightTotal === 0) drained?.()
        return
      }
      refill()
    })
    socket.on("error", (error) => failChild(error))
    socket.refill = refill
  }
  for (const socket of sockets) socket.refill()
  await sleep(warmupMs)
  process.send({ type: "mark", phase: "start" })
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  measuring = true
  await sleep(durationMs)
  measuring = false
  const elapsedMs = performance.now() - t0
  const cpu1 = process.cpuUsage()
  const count = completed
  process.send({ type: "mark", phase: "end" })
  stopping = true
  if (inFlightTotal > 0) await Promise.race([new Promise((resolve) => (drained = resolve)), sleep(5000)])
  for (const socket of sockets) socket.destroy()
  if (unexpected > 0) {
    throw new Error(`${unexpected} replies had an unexpected code or size (want code ${replyCode}, ${bodySize} bytes)`)
  }
  const cpu = cpuMicros(cpu0, cpu1)
  return {
    requests: count,
    seconds: elapsedMs / 1000,
    throughput: count / (elapsedMs / 1000),
    p50Ms: histogram.quantile(0.5) / 1e6,
    p99Ms: histogram.quantile(0.99) / 1e6,
    loadgenCpuUtil: cpu / 1000 / elapsedMs
  }
}

const idle = async ({ port, connections, parallel = 200 }) => {
  const ping = frame(PING_REQ)
  const sockets = []
  const openOne = async () => {
    const socket = await connect(port)
    socket.on("error", () => {})
    await new Promise((resolve, reject) => {
      const read = frameReader((
        code
      ) => (code === PING_RESP ? resolve() : reject(new Error(`ping answered with code ${code}`))))
      socket.on("data", read)
      socket.write(ping)
    })
    sockets.push(socket)
  }
  let next = 0
  await Promise.all(Array.from({ length: Math.min(parallel, connections) }, async () => {
    while (next < connections) {
      next++
      await openOne()
    }
  }))
  return { opened: sockets.length, sockets }
}

try {
  if (args.mode === "idle") {
    const { opened, sockets } = await idle(args)
    process.on("message", (msg) => {
      if (msg.type === "stop") {
        for (const socket of sockets) socket.destroy()
        setTimeout(() => process.exit(0), 20)
      }
    })
    process.send({ type: "connected", opened })
  } else {
    const result = await load(args)
    process.send({ type: "result", result })
    setTimeout(() => process.exit(0), 20)
  }
} catch (error) {
  failChild(error)
}
