// The PB benchmark: warren's PbServer (basic ping service + a tiny echo service) against a minimal raw `net` server
// with the same framing. Each server runs in its own process, the load generator in another.
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { start } from "../lib/child.mjs"
import { runWorkloads } from "../lib/runner.mjs"
import { cpuMicros } from "../lib/stats.mjs"
import { ECHO_EFFECT_REQ, ECHO_EFFECT_RESP, ECHO_REQ, ECHO_RESP, PING_REQ, PING_RESP } from "./frames.mjs"

const here = (p) => fileURLToPath(new URL(p, import.meta.url))

export const contenders = [
  { id: "warren", label: "warren PbServer", script: here("./warren-server.mjs") },
  { id: "raw", label: "raw net server", script: here("./raw-server.mjs") },
  // The required shape with nothing of warren's: a fiber per connection woken by its socket (fiber-server.mjs).
  { id: "fiber", label: "bare fiber per connection (reference)", script: here("./fiber-server.mjs") }
]

const loadColumns = [
  { field: "throughput", title: "req/s", digits: 0 },
  { field: "p50Ms", title: "p50 ms", digits: 3 },
  { field: "p99Ms", title: "p99 ms", digits: 3 },
  { field: "serverCpuUsPerReq", title: "server CPU µs/req", digits: 2 },
  { field: "serverUserUsPerReq", title: "of which user µs/req", digits: 2 },
  { field: "serverCpuUtil", title: "server CPU util", digits: 2 },
  { field: "serverRssMB", title: "server RSS MB", digits: 1 },
  { field: "loadgenCpuUtil", title: "loadgen CPU util", digits: 2 }
]

const idleColumns = [
  { field: "rssPerConnKB", title: "RSS KiB/conn", digits: 2 },
  { field: "heapPerConnKB", title: "heap KiB/conn", digits: 2 },
  { field: "baseRssMB", title: "RSS before MB", digits: 1 },
  { field: "rssMB", title: "RSS with conns MB", digits: 1 }
]

const throughputGoal = (id) => ({
  text: `warren >= 0.9x raw throughput (${id})`,
  contender: "warren",
  versus: "raw",
  field: "throughput",
  op: ">=",
  ratio: 0.9
})

/** The workloads, each run against every contender. */
const loadWorkloads = [
  {
    id: "ping-1x1",
    title: "ping, 1 connection, 1 in flight (sequential)",
    connections: 1,
    depth: 1,
    code: PING_REQ,
    replyCode: PING_RESP,
    bodySize: 0
  },
  {
    id: "ping-64x8",
    title: "ping, 64 connections x 8 in flight",
    connections: 64,
    depth: 8,
    code: PING_REQ,
    replyCode: PING_RESP,
    bodySize: 0
  },
  {
    id: "ping-pipelined-8x16",
    title: "ping pipelined, 8 connections x depth 16",
    connections: 8,
    depth: 16,
    code: PING_REQ,
    replyCode: PING_RESP,
    bodySize: 0
  },
  {
    id: "echo-1k-8x8",
    title: "1 KiB echo (code 200 -> 201), 8 connections x 8 in flight",
    connections: 8,
    depth: 8,
    code: ECHO_REQ,
    replyCode: ECHO_RESP,
    bodySize: 1024
  },
  {
    id: "echo-effect-64x1",
    title: "256 B echo from an effectful service (process returns an Effect; 202 -> 203), 64 connections x 1 in flight",
    connections: 64,
    depth: 1,
    code: ECHO_EFFECT_REQ,
    replyCode: ECHO_EFFECT_RESP,
    bodySize: 256
  }
]

/**
 * Runs the PB workloads; `options`: { durationMs, warmupMs, rounds, idleConnections, only, workloads, profile, pin }.
 * `pin` puts the server on CPU 0 and the load generator on CPU 1 (`taskset`). Off by default: on a quiet machine it
 * lets the raw server use a whole CPU under parallel load (unpinned, the scheduler tends to run server and load
 * generator on one CPU), but on a shared machine a pinned process cannot move away from a busy CPU.
 */
export const runPb = async (options) => {
  // `--engine <pb dist dir>` adds "base": the same server on another build of @warren/pb (an A/B in one run).
  const all = options.engine === undefined ? contenders : [
    ...contenders,
    { id: "base", label: "warren (--engine build)", script: here("./warren-server.mjs") }
  ]
  const chosen = (c) => options.only === undefined || options.only.includes(c.id)
  const workloads = loadWorkloads
    .filter((w) => options.workloads === undefined || options.workloads.includes(w.id))
    .map((w) => ({
      id: w.id,
      title: w.title,
      params: {
        connections: w.connections,
        depth: w.depth,
        code: w.code,
        replyCode: w.replyCode,
        bodySize: w.bodySize
      },
      pinned: options.pin === true,
      primary: "throughput",
      contenders: all.filter(chosen),
      fields: loadColumns.map((c) => c.field),
      columns: loadColumns,
      describe: (r) =>
        `${Math.round(r.throughput)} req/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  ` +
        `server cpu ${r.serverCpuUsPerReq.toFixed(2)} µs/req (user ${r.serverUserUsPerReq.toFixed(2)}; ${
          r.serverCpuUtil.toFixed(2)
        })  loadgen cpu ${r.loadgenCpuUtil.toFixed(2)}`,
      goals: [throughputGoal(w.id)],
      run: runLoad
    }))
  if (options.workloads === undefined || options.workloads.includes("idle")) {
    const n = options.idleConnections
    workloads.push({
      id: "idle",
      title: `memory: ${n} idle connections (each pinged once)`,
      params: { connections: n },
      primary: "rssPerConnKB",
      higherIsBetter: false,
      contenders: all.filter(chosen),
      fields: idleColumns.map((c) => c.field),
      columns: idleColumns,
      describe: (r) => `${r.rssPerConnKB.toFixed(2)} KiB RSS/conn  ${r.heapPerConnKB.toFixed(2)} KiB heap/conn`,
      goals: [{
        text: "warren <= 3x raw RSS per idle connection",
        contender: "warren",
        versus: "raw",
        field: "rssPerConnKB",
        op: "<=",
        ratio: 3
      }],
      run: runIdle,
      ulimit: fdLimitFor(n)
    })
  }
  return runWorkloads({
    name: "pb",
    rounds: options.rounds,
    options,
    workloads,
    runOne: (workload, contender) => workload.run(workload, contender, options)
  })
}

const startServer = async (contender, options, workload, ulimit) => {
  const execArgv = ["--expose-gc"]
  if (options.profile) {
    execArgv.push(
      "--cpu-prof",
      `--cpu-prof-dir=${options.profileDir}`,
      `--cpu-prof-name=pb-${workload.id}-${contender.id}-${Date.now()}.cpuprofile`
    )
  }
  const engine = contender.id === "base" ? options.engine : undefined
  const server = start(contender.script, { port: 0, engine }, {
    execArgv,
    ulimit,
    cpu: workload.pinned ? 0 : undefined
  })
  try {
    const { port } = await server.next("ready", 30_000)
    return { server, port }
  } catch (error) {
    await server.stop()
    throw error
  }
}

const stats = (server, gc = false) => server.ask({ type: "stats", gc }, "stats", 30_000)

const runLoad = async (workload, contender, options) => {
  const { server, port } = await startServer(contender, options, workload)
  let loadgen
  try {
    loadgen = start(here("./loadgen.mjs"), {
      mode: "load",
      port,
      ...workload.params,
      warmupMs: options.warmupMs,
      durationMs: options.durationMs
    }, { cpu: workload.pinned ? 1 : undefined })
    const timeout = options.warmupMs + options.durationMs + 60_000
    await loadgen.next("mark", timeout)
    const s0 = await stats(server)
    await loadgen.next("mark", timeout)
    const s1 = await stats(server)
    const { result } = await loadgen.next("result", 30_000)
    const cpu = cpuMicros(s0.cpu, s1.cpu)
    return {
      ...result,
      serverCpuUsPerReq: cpu / result.requests,
      // user time: the server's own code (JS, libuv); the rest is the kernel's (socket reads and writes, wake-ups)
      serverUserUsPerReq: (s1.cpu.user - s0.cpu.user) / result.requests,
      serverCpuUtil: cpu / 1e6 / result.seconds,
      serverRssMB: s1.rss / 1048576
    }
  } finally {
    await loadgen?.stop()
    await server.stop()
  }
}

const runIdle = async (workload, contender, options) => {
  const n = workload.params.connections
  const ulimit = workload.ulimit
  if (ulimit === null) {
    throw new Error(`the open-file limit is too low for ${n} connections and cannot be raised (ulimit -Hn)`)
  }
  const { server, port } = await startServer(contender, options, workload, ulimit)
  const holders = []
  try {
    // warm the server up (code loaded, JIT, buffers) with a few connections that come and go
    const warm = start(here("./loadgen.mjs"), { mode: "idle", port, connections: 50 })
    holders.push(warm)
    await warm.next("connected", 60_000)
    await warm.stop()
    await new Promise((resolve) => setTimeout(resolve, 300))
    const before = await stats(server, true)
    const holder = start(here("./loadgen.mjs"), { mode: "idle", port, connections: n }, { ulimit })
    holders.push(holder)
    const { opened } = await holder.next("connected", 120_000)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const after = await stats(server, true)
    return {
      connections: opened,
      rssPerConnKB: (after.rss - before.rss) / opened / 1024,
      heapPerConnKB: (after.heapUsed - before.heapUsed) / opened / 1024,
      baseRssMB: before.rss / 1048576,
      rssMB: after.rss / 1048576
    }
  } finally {
    for (const h of holders) await h.stop()
    await server.stop()
  }
}

/**
 * The soft open-file limit to run idle-connection processes with: undefined when the current one is enough, a raised
 * value when the hard limit allows it, null when it cannot be raised far enough.
 */
const fdLimitFor = (n) => {
  const need = n + 512
  const soft = readLimit("ulimit -n")
  if (soft >= need) return undefined
  const hard = readLimit("ulimit -Hn")
  if (hard >= need) {
    console.log(
      `note: ulimit -n is ${soft}, too low for ${n} connections; the idle-connection processes run with ulimit -n ${need}`
    )
    return need
  }
  console.log(
    `WARNING: ulimit -n is ${soft} (hard ${hard}): too low for ${n} idle connections; raise it (ulimit -n ${need}) to run that workload`
  )
  return null
}

const readLimit = (cmd) => {
  const out = execFileSync("/bin/sh", ["-c", cmd], { encoding: "utf8" }).trim()
  return out === "unlimited" ? Infinity : Number(out)
}
