// The RPC benchmark: warren's RPC client against a raw amqplib client and rabbitmq-client's RPCClient, all talking
// to the same plain-amqplib echo server (its own process) through one RabbitMQ node.
import { fileURLToPath } from "node:url"
import { startBroker } from "../lib/broker.mjs"
import { start } from "../lib/child.mjs"
import { runWorkloads } from "../lib/runner.mjs"

const here = (p) => fileURLToPath(new URL(p, import.meta.url))

export const contenders = [
  { id: "warren", label: "warren RpcClient" },
  { id: "warren-promise", label: "warren RpcClient, runPromise per request" },
  { id: "warren-promise-api", label: "warren Promise API (@warren/amqp/promise)" },
  { id: "amqplib", label: "raw amqplib" },
  { id: "amqplib-runpromise", label: "raw amqplib, runPromise per request (reference)" },
  { id: "rabbitmq-client", label: "rabbitmq-client" }
]

const columns = [
  { field: "throughput", title: "req/s", digits: 0 },
  { field: "p50Ms", title: "p50 ms", digits: 3 },
  { field: "p99Ms", title: "p99 ms", digits: 3 },
  { field: "cpuUsPerReq", title: "client CPU µs/req", digits: 1 },
  { field: "cpuUtil", title: "client CPU util", digits: 2 },
  { field: "rssMB", title: "client RSS MB", digits: 1 },
  { field: "turnaroundUs", title: "client turnaround µs (c1)", digits: 1 },
  { field: "firstSecondThroughput", title: "req/s in 1st s", digits: 0 }
]

/** Runs the RPC workloads; `options`: { durationMs, warmupMs, rounds, concurrencies, payloadSize, only, profile }. */
export const runRpc = async (options) => {
  const broker = await startBroker()
  console.log(`broker: ${broker.kind} ${broker.url.replace(/\/\/[^@]*@/, "//")}`)
  const queue = "warren.bench.echo"
  const server = start(here("./echo-server.mjs"), { url: broker.url, queue })
  try {
    await server.next("ready", 30_000)
    const workloads = options.concurrencies.map((concurrency) => ({
      id: `c${concurrency}`,
      title: `${options.payloadSize}-byte echo RPC, concurrency ${concurrency}`,
      params: { concurrency, payloadSize: options.payloadSize },
      primary: "throughput",
      // `--engine <dist dir of @warren/amqp>` adds "base", "base-promise" and "base-promise-api": warren on another build (an A/B).
      contenders: (options.engine === undefined ? contenders : [
        ...contenders,
        { id: "base", label: "warren RpcClient (--engine build)" },
        { id: "base-promise", label: "warren RpcClient, runPromise per request (--engine build)" },
        { id: "base-promise-api", label: "warren Promise API (--engine build)" }
      ]).filter((c) => options.only === undefined || options.only.includes(c.id)),
      fields: columns.map((c) => c.field),
      columns,
      describe: (r) =>
        `${Math.round(r.throughput)} req/s  p50 ${r.p50Ms.toFixed(3)} ms  p99 ${r.p99Ms.toFixed(3)} ms  ` +
        `cpu ${r.cpuUsPerReq.toFixed(1)} µs/req  rss ${r.rssMB.toFixed(1)} MB` +
        (r.turnaroundUs == null
          ? ""
          : `  turnaround ${r.turnaroundUs.toFixed(1)} µs (outside ${r.outsideUs.toFixed(1)})`) +
        `  1st s ${Math.round(r.firstSecondThroughput)} req/s`,
      goals: [
        {
          text: `warren >= 0.9x raw amqplib throughput at concurrency ${concurrency}`,
          contender: "warren",
          versus: "amqplib",
          field: "throughput",
          op: ">=",
          ratio: 0.9
        },
        {
          text: `warren from runPromise callers >= 0.9x raw amqplib throughput at concurrency ${concurrency}`,
          contender: "warren-promise",
          versus: "amqplib",
          field: "throughput",
          op: ">=",
          ratio: 0.9
        },
        {
          text: `warren Promise API >= 0.9x raw amqplib throughput at concurrency ${concurrency}`,
          contender: "warren-promise-api",
          versus: "amqplib",
          field: "throughput",
          op: ">=",
          ratio: 0.9
        },
        {
          text: `warren ahead of rabbitmq-client throughput at concurrency ${concurrency}`,
          contender: "warren",
          versus: "rabbitmq-client",
          field: "throughput",
          op: ">",
          ratio: 1
        }
      ]
    }))
    return await runWorkloads({
      name: "rpc",
      rounds: options.rounds,
      options: { ...options, broker: broker.kind },
      workloads,
      runOne: async (workload, contender) => {
        const client = start(here("./client.mjs"), {
          url: broker.url,
          queue,
          contender: contender.id,
          concurrency: workload.params.concurrency,
          payloadSize: workload.params.payloadSize,
          warmupMs: options.warmupMs,
          durationMs: options.durationMs,
          engine: contender.id.startsWith("base") ? options.engine : undefined
        }, { execArgv: profileArgs(options, contender, workload) })
        try {
          const { result } = await client.next("result", options.warmupMs + options.durationMs + 60_000)
          return result
        } finally {
          await client.stop()
        }
      }
    })
  } finally {
    await server.stop()
    await broker.stop()
  }
}

const profileArgs = (options, contender, workload) =>
  options.profile
    ? [
      "--cpu-prof",
      "--cpu-prof-interval=100",
      `--cpu-prof-dir=${options.profileDir}`,
      `--cpu-prof-name=rpc-${workload.id}-${contender.id}-${Date.now()}.cpuprofile`
    ]
    : []
