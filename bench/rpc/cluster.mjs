// RPC throughput on one RabbitMQ node vs a 2-node cluster, in one run (interleaved rounds, ratios against the
// single-node classic-queue setup). `node bench/rpc/cluster.mjs [--duration 4s] [--rounds 3] [--concurrency 64]`
// (run `npm run build` first). Everything runs on this machine: the nodes, the servers and the clients share its
// cores, so the figures say what clustering costs per request, not what more machines would add.
//
// Setups, each with two warren RpcServers (echo, concurrency 32) on one queue and two warren Promise clients
// (concurrency/2 requests in flight each):
//   single-classic  one node, classic queue (the baseline)
//   single-quorum   one node, quorum queue (the cost of the quorum queue alone)
//   cluster-quorum  2-node cluster, quorum queue; one server and one client connected to each node, every party
//                   listing both URLs starting with its own node (the deployment of docs/amqp-server.md)
import { performance } from "node:perf_hooks"
import { start, startCluster } from "@warren/amqp/TestBroker"
import { connect, serve } from "@warren/amqp/promise"

const args = process.argv.slice(2)
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i === -1 ? fallback : args[i + 1]
}
const seconds = (text) => Number(String(text).replace(/s$/, ""))
const durationMs = seconds(option("duration", "4s")) * 1000
const rounds = Number(option("rounds", "3"))
const concurrency = Number(option("concurrency", "64"))
const payload = Buffer.alloc(256, 7)

let queueCounter = 0
const runSetup = async ({ serverUrls, clientUrls, queueType }) => {
  const queue = `warren.bench.cluster.${process.pid}.${++queueCounter}`
  const servers = []
  for (const urls of serverUrls) {
    servers.push(await serve(urls, { queue, queueType, concurrency: 32 }, (body) => body))
  }
  const clients = await Promise.all(clientUrls.map((urls) => connect(urls, { timeout: "30 seconds" })))
  let stopping = false
  let measuring = false
  let completed = 0
  const workers = clients.flatMap((client) =>
    Array.from({ length: Math.max(1, concurrency / clients.length) }, async () => {
      while (!stopping) {
        await client.request(payload, queue)
        if (measuring) completed++
      }
    })
  )
  await new Promise((resolve) => setTimeout(resolve, 1000)) // warm-up
  measuring = true
  const t0 = performance.now()
  await new Promise((resolve) => setTimeout(resolve, durationMs))
  measuring = false
  const elapsed = performance.now() - t0
  stopping = true
  await Promise.all(workers)
  await Promise.all(clients.map((client) => client.close()))
  await Promise.all(servers.map((server) => server.close()))
  return completed / (elapsed / 1000)
}

const single = await start()
const cluster = await startCluster({ size: 2 })
try {
  const a = single.info.url
  const [c0, c1] = cluster.urls
  const setups = {
    "single-classic": { serverUrls: [a, a], clientUrls: [a, a], queueType: "classic" },
    "single-quorum": { serverUrls: [a, a], clientUrls: [a, a], queueType: "quorum" },
    "cluster-quorum": { serverUrls: [[c0, c1], [c1, c0]], clientUrls: [[c0, c1], [c1, c0]], queueType: "quorum" }
  }
  const results = Object.fromEntries(Object.keys(setups).map((name) => [name, []]))
  for (let round = 1; round <= rounds; round++) {
    for (const [name, setup] of Object.entries(setups)) {
      const rate = await runSetup(setup)
      results[name].push(rate)
      console.log(`round ${round} ${name.padEnd(15)} ${Math.round(rate)} req/s`)
    }
  }
  const median = (values) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]
  const base = median(results["single-classic"])
  console.log(`\nmedian of ${rounds} rounds, ${durationMs / 1000} s each, concurrency ${concurrency}, 256-byte echo:`)
  for (const [name, values] of Object.entries(results)) {
    console.log(`${name.padEnd(15)} ${String(Math.round(median(values))).padStart(6)} req/s  ${(median(values) / base).toFixed(2)}x`)
  }
} finally {
  await cluster.stop()
  await single.stop()
}
