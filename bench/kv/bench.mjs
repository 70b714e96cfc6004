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

// `--store postgres`: one and two PB servers on one PostgreSQL (the load generator spreads its connections over
// both, as a load balancer would), against one embedded server with the log synced always and one in memory.
// PostgreSQL is a private cluster with its default durability (fsync on), or DATABASE_URL.
export const postgresContenders = [
  { id: "pg-1", label: "PostgreSQL, 1 PB server", servers: 1, postgres: true },
  { id: "pg-2", label: "PostgreSQL, 2 PB servers", servers: 2, postgres: true },
  { id: "always", label: "embedded, log sync always", sync: "always" },
  { id: "memory", label: "embedded, in memory", sync: "memory" }
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
  if (options.store === "postgres") return runKvPostgres(options)
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

const runKvPostgres = async (options) => {
  const { start: startPostgres } = await import("@warren/kv/TestPostgres")
  const postgres = await startPostgres({ durable: true })
  console.log(`PostgreSQL: ${postgres.info.kind === "local" ? "a private cluster (fsync on)" : "DATABASE_URL"}`)
  const chosen = (c) => options.only === undefined || options.only.includes(c.id)
  try {
    const workloads = options.concurrencies.map((n) => ({
      id: `put-${n}`,
      title: `put 256 B, ${n} PB client${n === 1 ? "" : "s"}, 1 request in flight each`,
      params: { connections: n, keys: 1000, valueSize: 256 },
      primary: "throughput",
      contenders: postgresContenders.filter(chosen),
      fields: pgColumns.map((c) => c.field),
      columns: pgColumns,
      describe: (r) =>
        `${Math.round(r.throughput)} puts/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  ` +
        `servers cpu ${r.serverCpuUsPerReq.toFixed(2)} µs/put`,
      goals: []
    }))
    return await runWorkloads({
      name: "kv-postgres",
      rounds: options.rounds,
      options,
      workloads,
      runOne: (workload, contender) =>
        runLoad(workload, contender, { ...options, url: contender.postgres ? postgres.info.url : undefined })
    })
  } finally {
    await postgres.stop()
  }
}

const pgColumns = [
  { field: "throughput", title: "puts/s", digits: 0 },
  { field: "p50Ms", title: "p50 ms", digits: 3 },
  { field: "p99Ms", title: "p99 ms", digits: 3 },
  { field: "serverCpuUsPerReq", title: "PB servers' CPU µs/put", digits: 2 },
  { field: "serverRssMB", title: "PB servers' RSS MB", digits: 1 }
]

const runLoad = async (workload, contender, options) => {
  const servers = Array.from({ length: contender.servers ?? 1 }, () =>
    start(here("./kv-server.mjs"), {
      port: 0,
      sync: contender.sync,
      syncInterval: "100 millis",
      dataDir: options.dataDir ?? tmpdir(),
      url: options.url
    }))
  let loadgen
  try {
    const ports = await Promise.all(servers.map(async (server) => (await server.next("ready", 60_000)).port))
    loadgen = start(here("./loadgen.mjs"), {
      ...workload.params,
      port: ports[0],
      ports,
      warmupMs: options.warmupMs,
      durationMs: options.durationMs
    })
    const timeout = options.warmupMs + options.durationMs + 60_000
    const all = (f) => Promise.all(servers.map(f))
    await loadgen.next("mark", timeout)
    const s0 = await all(stats)
    await loadgen.next("mark", timeout)
    const s1 = await all(stats)
    const { result } = await loadgen.next("result", 30_000)
    const sum = (f) => servers.reduce((n, _, i) => n + f(i), 0)
    const cpu = sum((i) => cpuMicros(s0[i].cpu, s1[i].cpu))
    const fsyncs = sum((i) => s1[i].fsyncs - s0[i].fsyncs)
    const records = sum((i) => s1[i].records - s0[i].records)
    return {
      ...result,
      putsPerFsync: fsyncs === 0 ? 0 : records / fsyncs,
      serverCpuUsPerReq: cpu / result.requests,
      serverRssMB: sum((i) => s1[i].rss) / 1048576
    }
  } finally {
    await loadgen?.stop()
    await Promise.all(servers.map((server) => server.stop()))
  }
}
