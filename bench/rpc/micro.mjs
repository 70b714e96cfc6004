// A broker-free model of the RPC client's request path, for quick A/B of the call path's CPU cost: a process
// keeps each call's From (as the client's handleCall does when it publishes), a setImmediate "socket read" casts
// the replies back (as the reply consumer does) and the process answers them with replyTo. The baseline is the
// raw amqplib client's shape (a Map of Promise resolvers); `floor` is a bare Effect.async run with runPromise per
// request (what any Effect library pays per request from Promise code), `floorMicro` the same on a runtime whose
// scheduler is one shared microtask queue, `callPromise` Process.unsafeCallPromise (no fiber), `floorSync` a runPromise of a completed Effect plus a Promise request.
// Usage (after tsc -b): [ROUNDS=2] [COALESCE=1] [C=1,64] node bench/rpc/micro.mjs [ms per run] [contenders, comma-separated]
// (the *Eager contenders start the process on an EagerScheduler, coalescing with COALESCE=1, as the RPC client does). CPU per request is
// the figure to read; throughput here is not the broker bench's (no I/O).
import { performance } from "node:perf_hooks"

const { Effect, Exit, Layer, ManagedRuntime, Runtime, Scheduler, Scope } = await import("effect")
const { EagerScheduler, Process } = await import(process.env.PROCESS_DIST ?? "@warren/process")

const ms = Number(process.argv[2] ?? 1500)
const only = process.argv[3]?.split(",")

const makeBroker = (deliver) => {
  let pending = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    const batch = pending
    pending = []
    for (const item of batch) deliver(item)
  }
  return (item) => {
    pending.push(item)
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  }
}

const startWarren = async (eager = false) => {
  const runtime = ManagedRuntime.make(Layer.empty)
  let self
  const replies = makeBroker((from) => Process.unsafeCast(self, from))
  const behaviour = {
    init: (_, s) => {
      self = s
      return Process.ok(0)
    },
    handleCall: (request, from, state) => {
      replies(from)
      return Process.noreply(state)
    },
    handleCast: (from, state) => {
      Process.unsafeReplyTo(from, from.request)
      return Process.noreply(state)
    }
  }
  const scope = Effect.runSync(Scope.make())
  const startOptions = eager
    ? { scheduler: EagerScheduler.make({ coalesce: process.env.COALESCE === "1" }) }
    : undefined
  const ref = await runtime.runPromise(Scope.extend(Process.start(behaviour, 0, startOptions), scope))
  const options = { timeout: "30 seconds" }
  const request = (payload) => Process.call(ref, payload, options)
  const requestPromise = (payload) => Process.unsafeCallPromise(ref, payload, options)
  return { runtime, request, requestPromise }
}

const contenders = {
  baseline: async (c, control) => {
    const pending = new Map()
    let next = 0
    const replies = makeBroker(([id, payload]) => {
      const resolve = pending.get(id)
      pending.delete(id)
      resolve(payload)
    })
    const request = (payload) =>
      new Promise((resolve) => {
        const id = String(next++)
        pending.set(id, resolve)
        replies([id, payload])
      })
    await Promise.all(Array.from({ length: c }, async () => {
      while (!control.stopping) {
        await request(1)
        control.completed++
      }
    }))
  },
  fibers: async (c, control, eager = false) => {
    const { runtime, request } = await startWarren(eager)
    const worker = Effect.gen(function*() {
      while (!control.stopping) {
        yield* request(1)
        control.completed++
      }
    })
    await runtime.runPromise(
      Effect.forEach(Array.from({ length: c }), () => worker, { concurrency: "unbounded", discard: true })
    )
  },
  fibersEager: (c, control) => contenders.fibers(c, control, true),
  managedEager: (c, control) => contenders.managed(c, control, true),
  managed: async (c, control, eager = false) => {
    const { runtime, request } = await startWarren(eager)
    await Promise.all(Array.from({ length: c }, async () => {
      while (!control.stopping) {
        await runtime.runPromise(request(1))
        control.completed++
      }
    }))
  },
  floor: async (c, control) => {
    const runtime = ManagedRuntime.make(Layer.empty)
    const rt = await runtime.runtime()
    const run = Runtime.runPromise(rt)
    const replies = makeBroker(([resume, payload]) => resume(Exit.succeed(payload)))
    const request = (payload) => Effect.async((resume) => replies([resume, payload]))
    await Promise.all(Array.from({ length: c }, async () => {
      while (!control.stopping) {
        await run(request(1))
        control.completed++
      }
    }))
  },
  floorMicro: async (c, control) => {
    const runtime = ManagedRuntime.make(Layer.setScheduler(Scheduler.make((task) => queueMicrotask(task))))
    const rt = await runtime.runtime()
    const run = Runtime.runPromise(rt)
    const replies = makeBroker(([resume, payload]) => resume(Exit.succeed(payload)))
    const request = (payload) => Effect.async((resume) => replies([resume, payload]))
    await Promise.all(Array.from({ length: c }, async () => {
      while (!control.stopping) {
        await run(request(1))
        control.completed++
      }
    }))
  },
  floorSync: async (c, control) => {
    const runtime = ManagedRuntime.make(Layer.empty)
    const rt = await runtime.runtime()
    const run = Runtime.runPromise(rt)
    const replies = makeBroker(([resolve, payload]) => resolve(payload))
    const request = (payload) => new Promise((resolve) => replies([resolve, payload]))
    const eff = Effect.succeed(1)
    await Promise.all(Array.from({ length: c }, async () => {
      while (!control.stopping) {
        await run(eff)
        await request(1)
        control.completed++
      }
    }))
  },
  callPromise: async (c, control) => {
    const { requestPromise } = await startWarren()
    await Promise.all(Array.from({ length: c }, async () => {
      while (!control.stopping) {
        await requestPromise(1)
        control.completed++
      }
    }))
  },
  runtimeEager: (c, control) => contenders.runtime(c, control, true),
  runtime: async (c, control, eager = false) => {
    const { runtime, request } = await startWarren(eager)
    const rt = await runtime.runtime()
    const run = Runtime.runPromise(rt)
    await Promise.all(Array.from({ length: c }, async () => {
      while (!control.stopping) {
        await run(request(1))
        control.completed++
      }
    }))
  }
}

const rounds = Number(process.env.ROUNDS ?? 2)
for (let round = 1; round <= rounds; round++) {
  for (const c of (process.env.C ?? "1,64").split(",").map(Number)) {
    for (const [name, run] of Object.entries(contenders)) {
      if (only !== undefined && !only.includes(name)) continue
      const control = { stopping: false, completed: 0 }
      const done = run(c, control)
      await new Promise((r) => setTimeout(r, 300))
      const n0 = control.completed
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      await new Promise((r) => setTimeout(r, ms))
      const cpu1 = process.cpuUsage()
      const n = control.completed - n0
      const dt = performance.now() - t0
      control.stopping = true
      await done
      const cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
      console.log(
        `r${round} c${c} ${name.padEnd(9)} ${(n / dt * 1000).toFixed(0).padStart(8)} req/s  ${
          (cpu / n).toFixed(2).padStart(6)
        } µs CPU/req`
      )
    }
  }
}
process.exit(0)
