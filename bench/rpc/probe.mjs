// Count-based CPU probe (not part of `npm run bench`): for each contender, in a fresh child process, warm up with
// W requests, then measure the client CPU (process.cpuUsage) over N requests at concurrency C. Counting requests
// instead of seconds keeps the JIT warm-up equal for all contenders on a slow, shared machine.
// usage: node bench/rpc/probe.mjs '{"contenders":["warren","amqplib"],"concurrency":64,"warmup":20000,"requests":50000,"rounds":3}'
//   (add "engine":"<dist dir of another @warren/amqp build>" and the contenders "base"/"base-promise" for an A/B)
import { fork } from "node:child_process"
import { randomBytes } from "node:crypto"
import { fileURLToPath } from "node:url"
import { startBroker } from "../lib/broker.mjs"

const args = JSON.parse(process.argv[2] ?? "{}")
if (args.child) {
  const mod = await import(`./contenders/${args.contender}.mjs`)
  // "engine": another build's dist directory of @warren/amqp for the base* contenders (an A/B in one run)
  const engine = args.contender.startsWith("base") ? args.engine : undefined
  const client = await mod.open({ url: args.url, queue: args.queue, engine })
  const payload = randomBytes(256)
  const run = async (n) => {
    let left = n
    const control = { stopping: false }
    if (client.runWorkers) {
      let done = 0
      await new Promise((resolve) => {
        client.runWorkers({
          concurrency: args.concurrency,
          payload,
          control,
          onReply: () => {
            if (++done >= n) {
              control.stopping = true
              resolve()
            }
          }
        }).then(resolve)
      })
    } else {
      await Promise.all(Array.from({ length: args.concurrency }, async () => {
        while (left-- > 0) await client.request(payload)
      }))
    }
  }
  await run(args.warmup)
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await run(args.requests)
  const c = process.cpuUsage(c0)
  const ms = performance.now() - t0
  process.send({ cpuUs: (c.user + c.system) / args.requests, rps: args.requests / (ms / 1000) })
  await client.close()
  process.exit(0)
} else {
  const broker = await startBroker()
  const queue = "warren.bench.echo"
  const here = (p) => fileURLToPath(new URL(p, import.meta.url))
  const server = fork(here("./echo-server.mjs"), [JSON.stringify({ url: broker.url, queue })])
  await new Promise((resolve) => server.on("message", (m) => m.type === "ready" && resolve()))
  const results = {}
  for (let r = 0; r < (args.rounds ?? 3); r++) {
    for (const contender of args.contenders) {
      const child = fork(here("./probe.mjs"), [
        JSON.stringify({ ...args, child: true, contender, url: broker.url, queue })
      ])
      const res = await new Promise((resolve, reject) => {
        child.on("message", resolve)
        child.on("exit", (code) => code && reject(new Error(`exit ${code}`)))
      })
      ;(results[contender] ??= []).push(res)
      console.log(`round ${r + 1} ${contender}: ${res.cpuUs.toFixed(1)} µs cpu/req, ${Math.round(res.rps)} req/s`)
    }
  }
  const med = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  for (const [c, rs] of Object.entries(results)) {
    console.log(
      `${c}: median ${med(rs.map((x) => x.cpuUs)).toFixed(1)} µs cpu/req, ${
        Math.round(med(rs.map((x) => x.rps)))
      } req/s`
    )
  }
  server.kill()
  await broker.stop()
  process.exit(0)
}
