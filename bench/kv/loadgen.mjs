// The KV put load generator (its own process): `connections` PB connections, each a client doing one RpbPutReq at
// a time (send, wait for the RpbPutResp, send the next), over `keys` keys per connection with `valueSize`-byte
// values. Warm-up, then a measured window announced with `mark` messages (the parent reads the server's counters).
import * as Net from "node:net"
import { performance } from "node:perf_hooks"
import { childArgs, failChild } from "../lib/child.mjs"
import { cpuMicros, Histogram } from "../lib/stats.mjs"
import { frameReader } from "../pb/frames.mjs"

const PUT_REQ = 11
const PUT_RESP = 12

/** protobuf: field `n` as length-delimited bytes. */
const bytesField = (n, bytes) => Buffer.concat([Buffer.from([(n << 3) | 2]), varint(bytes.length), bytes])
const varint = (v) => {
  const out = []
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80)
    v >>>= 7
  }
  out.push(v)
  return Buffer.from(out)
}

/** A whole PB frame of RpbPutReq { bucket, key, content { value } }. */
const putFrame = (bucket, key, value) => {
  const body = Buffer.concat([bytesField(1, bucket), bytesField(2, key), bytesField(4, bytesField(1, value))])
  const out = Buffer.alloc(5 + body.length)
  out.writeUInt32BE(body.length + 1, 0)
  out[4] = PUT_REQ
  body.copy(out, 5)
  return out
}

const connect = (port) =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port, noDelay: true })
    socket.once("connect", () => {
      socket.removeListener("error", reject)
      resolve(socket)
    })
    socket.once("error", reject)
  })

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const load = async ({ port, ports = [port], connections, keys, valueSize, warmupMs, durationMs }) => {
  const histogram = new Histogram()
  let measuring = false
  let stopping = false
  let completed = 0
  let unexpected = 0
  let inFlight = 0
  let drained
  // With several servers (`ports`), connections are spread over them round-robin, as a load balancer would.
  const sockets = await Promise.all(Array.from({ length: connections }, (_, c) => connect(ports[c % ports.length])))
  sockets.forEach((socket, c) => {
    const value = Buffer.alloc(valueSize, 0x61 + (c % 26))
    const frames = Array.from({ length: keys }, (_, k) => putFrame(Buffer.from("bench"), Buffer.from(`c${c}-k${k}`), value))
    let next = 0
    let sentAt = 0
    const send = () => {
      if (stopping) return
      sentAt = performance.now()
      inFlight++
      socket.write(frames[next])
      next = (next + 1) % keys
    }
    socket.on("data", frameReader((code) => {
      inFlight--
      if (code !== PUT_RESP) unexpected++
      if (measuring) {
        histogram.record((performance.now() - sentAt) * 1e6)
        completed++
      }
      if (stopping) {
        if (inFlight === 0) drained?.()
        return
      }
      send()
    }))
    socket.on("error", (error) => failChild(error))
    socket.send = send
  })
  for (const socket of sockets) socket.send()
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
  if (inFlight > 0) await Promise.race([new Promise((resolve) => (drained = resolve)), sleep(5000)])
  for (const socket of sockets) socket.destroy()
  if (unexpected > 0) throw new Error(`${unexpected} replies were not RpbPutResp (an error reply?)`)
  return {
    requests: count,
    seconds: elapsedMs / 1000,
    throughput: count / (elapsedMs / 1000),
    p50Ms: histogram.quantile(0.5) / 1e6,
    p99Ms: histogram.quantile(0.99) / 1e6,
    loadgenCpuUtil: cpuMicros(cpu0, cpu1) / 1000 / elapsedMs
  }
}

try {
  const result = await load(childArgs())
  process.send({ type: "result", result })
  setTimeout(() => process.exit(0), 20)
} catch (error) {
  failChild(error)
}
