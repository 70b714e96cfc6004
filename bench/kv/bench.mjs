// The KV benchmark: put throughput of the KV service through real PB connections, for each sync policy of the
// embedded store's write-ahead log (always / interval / none) against today's in-memory store (no data file), all
// in the same run, interleaved. The server runs in its own process, the load generator in another.
import { tmpdir } from "node:os"
import { fileURLToPath } from "node:url"
import { start } from "../lib/child.mjs"
import { runWorkloads } from "../lib/runner.mjs"
import { cpuMicros } from "../lib/stats.mjs"

const here = (p) => fileURLToPath(new URL(p, import.meta.url))

export const contenders = [
  { id: "always", label: "log, sync always", sync: "always" },
  { id: "interval", label: "log, sync 100ms", sync: "interval" },
  { id: "none", label: "log, sync none", sync: "none" },
  { id: "memory", label: "in memory (today)", sync: "memory" }
]

const columns = [
  { field: "throughput", title: "puts/s", digits: 0 },
  { field: "p50Ms", title: "p50 ms", digits: 3 },
  { field: "p99Ms", title: "p99 ms", digits: 3 },
  { field: "putsPerFsync", title: "puts/fsync", digits: 1 },
  { field: "serverCpuUsPerReq", title: "server CPU µs/put", digits: 2 },
  { field: "serverRssMB", title: "server RSS MB", digits: 1 }
]

const ratio = (id, versus, min) => ({
  text: `${id} >= ${min}x in-memory put throughput`, contender: id, versus, field: "throughput", op: ">=", ratio: min
})

/**
 * Runs the KV workloads; `options`: { durationMs, warmupMs, rounds, only, concurrencies, dataDir }. `dataDir` (default
 * the OS temp directory) must be a real disk for `always` to mean anything: a tmpfs makes fsync free.
 */
export const runKv = async (options) => {
  const chosen = (c) => options.only === undefined || options.only.includes(c.id)
  const workloads = options.concurrencies.map((n) => ({
    id: `put-${n}`,
    title: `put 256 B, ${n} PB client${n === 1 ? "" : "s"}, 1 request in flight each`,
    params: { connections: n, keys: 1000, valueSize: 256 },
    primary: "throughput",
    contenders: contenders.filter(chosen),
    fields: columns.map((c) => c.field),
    columns,
    describe: (r) =>
      `${Math.round(r.throughput)} puts/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  ` +
      `${r.putsPerFsync.toFixed(1)} puts/fsync  server cpu ${r.serverCpuUsPerReq.toFixed(2)} µs/put`,
    goals: n >= 64 ? [ratio("always", "memory", 0.5)] : []
  }))
  return runWorkloads({
    name: "kv",
    rounds: options.rounds,
    options,
    workloads,
    runOne: (workload, contender) => runLoad(workload, contender, options)
  })
}

const stats = (server) => server.ask({ type: "stats" }, "stats", 30_000)

const runLoad = async (workload, contender, options) => {
  const server = start(here("./kv-server.mjs"), {
    port: 0,
    sync: contender.sync,
    syncInterval: "100 millis",
    dataDir: options.dataDir ?? tmpdir()
  })
  let loadgen
  try {
    const { port } = await server.next("ready", 30_000)
    loadgen = start(here("./loadgen.mjs"), { ...workload.params, port, warmupMs: options.warmupMs, durationMs: options.durationMs })
    const timeout = options.warmupMs + options.durationMs + 60_000
    await loadgen.next("mark", timeout)
    const s0 = await stats(server)
    await loadgen.next("mark", timeout)
    const s1 = await stats(server)
    const { result } = await loadgen.next("result", 30_000)
    const cpu = cpuMicros(s0.cpu, s1.cpu)
    const fsyncs = s1.fsyncs - s0.fsyncs
    return {
      ...result,
      putsPerFsync: fsyncs === 0 ? 0 : (s1.records - s0.records) / fsyncs,
      serverCpuUsPerReq: cpu / result.requests,
      serverRssMB: s1.rss / 1048576
    }
  } finally {
    await loadgen?.stop()
    await server.stop()
  }
}
