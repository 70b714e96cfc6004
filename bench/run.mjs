// `npm run bench [-- rpc|pb|kv|process] [--duration 5s] [--warmup 3s|1s] [--rounds 5|3] [--only warren,amqplib]
//   [--workloads ping-1x1,idle] [--idle-connections 5000] [--children 10000] [--engine dist-dir] [--profile]`
// Runs the benchmarks (rpc and pb by default; kv and process when named), prints tables, writes bench/results/<name>.json and the SVG charts.
// --profile runs warren's contender (or those of --only), once, under `node --cpu-prof` and prints the top costs of
// each profile: the client process for RPC, the server process for PB.
import { mkdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { writeCharts } from "./chart.mjs"
import { writeFileSync } from "node:fs"
import { markdownReport, writeReport } from "./lib/runner.mjs"
import { summarizeProfiles } from "./profile.mjs"
import { runKv } from "./kv/bench.mjs"
import { runPb } from "./pb/bench.mjs"
import { runProcess } from "./process/bench.mjs"
import { runRpc } from "./rpc/bench.mjs"

const usage = `usage: node bench/run.mjs [rpc] [pb] [kv] [process] [--duration 5s] [--warmup 3s|1s] [--rounds 5|3] [--only ids]
  [--workloads ids] [--concurrency 1,64] [--idle-connections 5000] [--children 10000] [--engine dist-dir]
  [--profile] [--pin | --no-pin]
  [--store embedded|postgres] (kv: postgres compares 1 and 2 PB servers on one PostgreSQL with the embedded store)`

const parseDuration = (s) => {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(s)
  if (!m) throw new Error(`bad duration ${s}\n${usage}`)
  return m[2] === "ms" ? Number(m[1]) : Number(m[1]) * 1000
}

const argv = process.argv.slice(2)
const names = []
// Defaults per benchmark. RPC: a 3 s warm-up, because warren's client needs about 3 s of load at concurrency 1 to
// reach its steady speed (V8 optimizing Effect's runtime) where raw amqplib needs about 1 s (docs/benchmarks.md,
// "Warm-up"), and 5 rounds, because the broker's share of a round trip moves more from run to run than the
// clients' differ. The first second of load is still reported for every contender.
const defaults = {
  rpc: { warmupMs: 3000, rounds: 5 },
  pb: { warmupMs: 1000, rounds: 3 },
  kv: { warmupMs: 1000, rounds: 3 },
  process: { warmupMs: 1000, rounds: 3 }
}
const opts = { durationMs: 5000, idleConnections: 5000, children: 10000, payloadSize: 256, concurrencies: [1, 64], profile: false }
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]
  const value = () => {
    const v = argv[++i]
    if (v === undefined) throw new Error(`${a} needs a value\n${usage}`)
    return v
  }
  if (a === "rpc" || a === "pb" || a === "kv" || a === "process") names.push(a)
  else if (a === "--duration") opts.durationMs = parseDuration(value())
  else if (a === "--warmup") opts.warmupMs = parseDuration(value())
  else if (a === "--rounds") opts.rounds = Number(value())
  else if (a === "--only") opts.only = value().split(",")
  else if (a === "--workloads") opts.workloads = value().split(",")
  else if (a === "--concurrency") opts.concurrencies = value().split(",").map(Number)
  else if (a === "--idle-connections") opts.idleConnections = Number(value())
  else if (a === "--store") {
    opts.store = value()
    if (opts.store !== "embedded" && opts.store !== "postgres") throw new Error(`--store: embedded or postgres\n${usage}`)
  } else if (a === "--children") opts.children = Number(value())
  else if (a === "--engine") opts.engine = value()
  else if (a === "--profile") opts.profile = true
  else if (a === "--pin") opts.pin = true
  else if (a === "--no-pin") opts.pin = false
  else if (a === "--help" || a === "-h") {
    console.log(usage)
    process.exit(0)
  } else throw new Error(`unknown argument ${a}\n${usage}`)
}
if (names.length === 0) names.push("rpc", "pb")

const resultsDir = fileURLToPath(new URL("./results/", import.meta.url))
if (opts.profile) {
  opts.only ??= ["warren"]
  opts.rounds = 1
  opts.profileDir = `${resultsDir}profiles/${Date.now()}`
  mkdirSync(opts.profileDir, { recursive: true })
}

for (const name of names) {
  const options = { ...defaults[name], ...opts }
  const run = { rpc: runRpc, pb: runPb, kv: runKv, process: runProcess }[name]
  const report = await run(options)
  if (opts.profile) continue
  const file = name === "kv" && opts.store === "postgres" ? "kv-postgres" : name
  writeReport(`${resultsDir}${file}.json`, report)
  writeFileSync(`${resultsDir}${file}.md`, markdownReport(report) + "\n")
  console.log(`wrote ${resultsDir}${file}.md`)
}
// the measured window is the last part of each profiled process's life (the drain and exit after it are short)
if (opts.profile) summarizeProfiles(opts.profileDir, { lastMs: opts.durationMs + 300 })
else writeCharts(names.filter((n) => n !== "process").map((n) => (n === "kv" && opts.store === "postgres" ? "kv-postgres" : n)))
process.exit(0)
